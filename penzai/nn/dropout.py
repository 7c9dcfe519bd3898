"""Dropout layers (stochastic, and a disabled identity version)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from penzai.core import named_axes
from penzai.core import struct
from penzai.nn import grouping
from penzai.nn import layer as layer_base


@struct.pytree_dataclass
class StochasticDropout(layer_base.Layer):
  """Randomly zeroes elements, rescaling the rest by `1 / (1 - drop_rate)`.

  Always stochastic; takes its randomness from a `pz.RandomStream` side input.
  Use `disable()` (or `maybe_dropout(None)`) for a deterministic identity.

  Attributes:
    drop_rate: Probability of dropping each element.
    share_across_axes: Named axes along which the same mask is reused.
    random_stream_input_name: Name of the `pz.RandomStream` side input.
  """

  drop_rate: float
  share_across_axes: tuple[str, ...] = dataclasses.field(
      default=(), metadata={"pytree_node": False}
  )
  random_stream_input_name: str = dataclasses.field(
      default="random_stream", metadata={"pytree_node": False}
  )

  def __call__(
      self, value: named_axes.NamedArrayBase, /, **side_inputs: Any
  ) -> named_axes.NamedArrayBase:
    """Applies dropout, consuming one key from the random stream.

    Raises:
      KeyError: If the random stream side input is missing.
    """
    if self.random_stream_input_name not in side_inputs:
      raise KeyError(
          f"StochasticDropout needs a pz.RandomStream side input named"
          f" {self.random_stream_input_name!r}, but got side inputs"
          f" {sorted(map(str, side_inputs))}."
      )
    random_stream = side_inputs[self.random_stream_input_name]
    with jax.named_scope(type(self).__name__):
      named_shape = value.named_shape
      mask_names = [n for n in named_shape if n not in self.share_across_axes]
      mask_sizes = tuple(named_shape[n] for n in mask_names)
      drop = named_axes.wrap(
          jax.random.bernoulli(
              random_stream.next_key(), p=self.drop_rate, shape=mask_sizes
          ),
          *mask_names,
      )
      return named_axes.nmap(jnp.where)(
          drop, 0, value / (1 - self.drop_rate)
      )

  def disable(self) -> DisabledDropout:
    """Returns the equivalent `DisabledDropout` (an identity layer)."""
    return DisabledDropout(
        drop_rate=self.drop_rate,
        share_across_axes=tuple(self.share_across_axes),
        random_stream_input_name=self.random_stream_input_name,
    )


@struct.pytree_dataclass
class DisabledDropout(grouping.Identity):
  """A dropout layer that has been turned off: behaves as `Identity`.

  Keeps its configuration so that `enable()` restores the stochastic layer.

  Attributes:
    drop_rate: Drop rate to use when re-enabled.
    share_across_axes: Axes sharing a mask when re-enabled.
    random_stream_input_name: Side-input name of the random stream.
  """

  drop_rate: float
  share_across_axes: tuple[str, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  random_stream_input_name: str = dataclasses.field(
      default="random_stream", metadata={"pytree_node": False}
  )

  def enable(self) -> StochasticDropout:
    """Returns the equivalent `StochasticDropout`."""
    return StochasticDropout(
        drop_rate=self.drop_rate,
        share_across_axes=self.share_across_axes,
        random_stream_input_name=self.random_stream_input_name,
    )


def maybe_dropout(
    drop_rate: float | None,
    share_across_axes: tuple[str, ...] = (),
    random_stream_input_name: str = "random_stream",
) -> StochasticDropout | DisabledDropout:
  """A `StochasticDropout`, or a `DisabledDropout` if `drop_rate` is None."""
  if drop_rate is None:
    return DisabledDropout(
        drop_rate=0.0,
        share_across_axes=share_across_axes,
        random_stream_input_name=random_stream_input_name,
    )
  return StochasticDropout(
      drop_rate, share_across_axes, random_stream_input_name
  )
