"""Standardization layers: LayerNorm and RMS normalization."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from penzai.core import named_axes
from penzai.core import struct
from penzai.nn import basic_ops
from penzai.nn import grouping
from penzai.nn import layer as layer_base
from penzai.nn import linear_and_affine

NamedArray = named_axes.NamedArray


def _across_tuple(across: str | tuple[str, ...]) -> tuple[str, ...]:
  return (across,) if isinstance(across, str) else tuple(across)


@struct.pytree_dataclass
class Standardize(layer_base.Layer):
  """Standardizes to zero mean and unit variance jointly over some axes.

  Computes `(x - mean) * rsqrt(var + epsilon)` with `jax.nn.standardize`.

  Attributes:
    across: Axis name(s) to standardize over.
    epsilon: Added to the variance for numerical stability.
  """

  across: str | tuple[str, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  epsilon: float | jax.Array = 1e-6

  def __call__(
      self, value: named_axes.NamedArrayBase, /, **_unused_side_inputs: Any
  ) -> named_axes.NamedArrayBase:
    """Returns `value` standardized over `across`."""
    across = _across_tuple(self.across)
    with jax.named_scope(type(self).__name__):
      if isinstance(value, named_axes.NamedArrayBase):
        basic_ops._check_axes_present(  # pylint: disable=protected-access
            "Standardize", across, value.named_shape
        )
      return named_axes.nmap(jax.nn.standardize)(
          value.untag(*across), axis=None, epsilon=self.epsilon
      ).tag(*across)


@struct.pytree_dataclass
class LayerNorm(grouping.Sequential):
  """Layer normalization: `Standardize`, then a learned scale and shift."""

  sublayers: list[layer_base.Layer]

  @classmethod
  def from_config(
      cls,
      name: str,
      init_base_rng: jax.Array | None,
      across_axes: dict[str, int],
      epsilon: float | jax.Array = 1e-6,
      dtype: jax.typing.DTypeLike = jnp.float32,
  ) -> LayerNorm:
    """Builds a layer norm with parameters `{name}/scale.weights` and `{name}/shift.bias`.

    Args:
      name: Layer name (prefix of the parameter labels).
      init_base_rng: Base PRNG key, or None to leave parameter slots.
      across_axes: Axes to normalize over, with sizes.
      epsilon: Added to the variance (kept as given).
      dtype: Parameter dtype.
    """
    return cls(
        sublayers=[
            Standardize(across=tuple(across_axes.keys()), epsilon=epsilon),
            linear_and_affine.Linear.from_config(
                name=f"{name}/scale",
                init_base_rng=init_base_rng,
                input_axes={},
                output_axes={},
                parallel_axes=across_axes,
                initializer=linear_and_affine.constant_initializer(1.0),
                dtype=dtype,
            ),
            linear_and_affine.AddBias.from_config(
                name=f"{name}/shift",
                init_base_rng=init_base_rng,
                biased_axes=across_axes,
                dtype=dtype,
            ),
        ]
    )


@struct.pytree_dataclass
class RMSStandardize(layer_base.Layer):
  """Divides by the root mean square taken jointly over some axes.

  Computes `x * rsqrt(mean(x**2) + epsilon)` in the input's dtype.

  Attributes:
    across: Axis name(s) to normalize over.
    epsilon: Added to the mean square for numerical stability.
  """

  across: str | tuple[str, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  epsilon: float | jax.Array = 1e-6

  def __call__(
      self, value: named_axes.NamedArrayBase, /, **_unused_side_inputs: Any
  ) -> named_axes.NamedArrayBase:
    """Returns `value` RMS-normalized over `across`."""
    across = _across_tuple(self.across)
    epsilon = self.epsilon

    def _rms_standardize(x: jax.Array) -> jax.Array:
      eps = jnp.asarray(epsilon, dtype=x.dtype)
      return x * jax.lax.rsqrt(jnp.mean(jnp.square(x)) + eps)

    with jax.named_scope(type(self).__name__):
      if isinstance(value, named_axes.NamedArrayBase):
        basic_ops._check_axes_present(  # pylint: disable=protected-access
            "RMSStandardize", across, value.named_shape
        )
      return named_axes.nmap(_rms_standardize)(value.untag(*across)).tag(
          *across
      )


@struct.pytree_dataclass
class RMSLayerNorm(grouping.Sequential):
  """RMS normalization: `RMSStandardize`, then a learned scale."""

  sublayers: list[layer_base.Layer]

  @classmethod
  def from_config(
      cls,
      name: str,
      init_base_rng: jax.Array | None,
      across_axes: dict[str, int],
      epsilon: float | jax.Array = 1e-6,
      dtype: jax.typing.DTypeLike = jnp.float32,
  ) -> RMSLayerNorm:
    """Builds an RMS norm with parameter `{name}/scale.weights`.

    The epsilon is stored as a 0-d array in the parameter dtype.

    Args:
      name: Layer name (prefix of the parameter label).
      init_base_rng: Base PRNG key, or None to leave a parameter slot.
      across_axes: Axes to normalize over, with sizes.
      epsilon: Added to the mean square.
      dtype: Parameter dtype (also the dtype of the stored epsilon).
    """
    return cls(
        sublayers=[
            RMSStandardize(
                across=tuple(across_axes.keys()),
                epsilon=jnp.asarray(epsilon, dtype=dtype),
            ),
            linear_and_affine.Linear.from_config(
                name=f"{name}/scale",
                init_base_rng=init_base_rng,
                input_axes={},
                output_axes={},
                parallel_axes=across_axes,
                initializer=linear_and_affine.constant_initializer(1.0),
                dtype=dtype,
            ),
        ]
    )
