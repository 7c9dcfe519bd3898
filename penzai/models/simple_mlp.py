"""Simple multi-layer perceptrons built from `pz.nn` components."""

from __future__ import annotations

from collections.abc import Callable

import jax

from penzai.core import struct
from penzai.nn import basic_ops
from penzai.nn import dropout
from penzai.nn import grouping
from penzai.nn import layer as layer_base
from penzai.nn import linear_and_affine


def _check_feature_sizes(feature_sizes: list[int]) -> None:
  # The reference contract specifies an AssertionError here.
  if len(feature_sizes) < 2:
    raise AssertionError(
        "An MLP needs at least two feature sizes (input and output), got"
        f" feature_sizes={feature_sizes!r}."
    )


@struct.pytree_dataclass(has_implicitly_inherited_fields=True)
class MLP(grouping.Sequential):
  """A sequence of `Affine` layers with an activation between them.

  The input must be a floating NamedArray with the feature axis (plus any
  batch axes); each `Affine` maps the feature axis to the next size.
  """

  @classmethod
  def from_config(
      cls,
      init_base_rng: jax.Array | None,
      feature_sizes: list[int],
      name: str = "mlp",
      activation_fn: Callable[[jax.Array], jax.Array] = jax.nn.relu,
      feature_axis: str = "features",
  ) -> MLP:
    """Builds an MLP.

    Args:
      init_base_rng: Base key for parameter initialization, or None to leave
        parameter slots.
      feature_sizes: Feature sizes from input to output (at least two).
      name: Name prefix of the parameter labels.
      activation_fn: Activation applied between affine layers.
      feature_axis: Name of the feature axis.

    Returns:
      `MLP[Affine_0, Elementwise(activation), Affine_1, ...]`.
    """
    _check_feature_sizes(feature_sizes)
    sublayers: list[layer_base.Layer] = []
    for i, (feature_in, feature_out) in enumerate(
        zip(feature_sizes[:-1], feature_sizes[1:])
    ):
      if i > 0:
        sublayers.append(basic_ops.Elementwise(activation_fn))
      sublayers.append(
          linear_and_affine.Affine.from_config(
              name=f"{name}/Affine_{i}",
              init_base_rng=init_base_rng,
              input_axes={feature_axis: feature_in},
              output_axes={feature_axis: feature_out},
          )
      )
    return cls(sublayers=sublayers)


@struct.pytree_dataclass(has_implicitly_inherited_fields=True)
class DropoutMLP(grouping.Sequential):
  """An MLP with stochastic dropout before each activation.

  Calling it requires the side input `random_stream=pz.RandomStream(...)`.
  """

  @classmethod
  def from_config(
      cls,
      init_base_rng: jax.Array | None,
      feature_sizes: list[int],
      drop_rate: float,
      name: str = "dropout_mlp",
      activation_fn: Callable[[jax.Array], jax.Array] = jax.nn.relu,
      feature_axis: str = "features",
  ) -> DropoutMLP:
    """Builds a dropout MLP.

    Args:
      init_base_rng: Base key for parameter initialization, or None to leave
        parameter slots.
      feature_sizes: Feature sizes from input to output (at least two).
      drop_rate: Probability of dropping each hidden activation.
      name: Name prefix of the parameter labels.
      activation_fn: Activation applied between affine layers.
      feature_axis: Name of the feature axis.

    Returns:
      `DropoutMLP[Affine_0, StochasticDropout, Elementwise, Affine_1, ...]`.
    """
    _check_feature_sizes(feature_sizes)
    sublayers: list[layer_base.Layer] = []
    for i, (feature_in, feature_out) in enumerate(
        zip(feature_sizes[:-1], feature_sizes[1:])
    ):
      if i > 0:
        sublayers.append(dropout.StochasticDropout(drop_rate))
        sublayers.append(basic_ops.Elementwise(activation_fn))
      sublayers.append(
          linear_and_affine.Affine.from_config(
              name=f"{name}/Affine_{i}",
              init_base_rng=init_base_rng,
              input_axes={feature_axis: feature_in},
              output_axes={feature_axis: feature_out},
          )
      )
    return cls(sublayers=sublayers)
