"""Parameter-free elementwise and normalization-free operations."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from treescope import formatting_util

from penzai.core import named_axes
from penzai.core import struct
from penzai.nn import layer as layer_base


def _check_axes_present(
    layer_name: str, axes: tuple[Any, ...], named_shape: Mapping[Any, int]
) -> None:
  """Raises a ValueError naming `layer_name` if any of `axes` is missing."""
  missing = [axis for axis in axes if axis not in named_shape]
  if missing:
    raise ValueError(
        f"{layer_name} expected its input to have named axes {axes}, but"
        f" axes {missing} are missing from the input's named shape"
        f" {dict(named_shape)}."
    )


@struct.pytree_dataclass
class Elementwise(layer_base.Layer):
  """Applies a function to every element (e.g. `Elementwise(jax.nn.relu)`).

  Named arrays are handled with `nmap`; plain arrays are passed to `fn`
  directly.

  Attributes:
    fn: The elementwise function.
  """

  fn: Callable[[Any], Any] = dataclasses.field(
      metadata={"pytree_node": False}
  )

  def __call__(self, value: Any, /, **_unused_side_inputs: Any) -> Any:
    """Applies `fn` to `value`."""
    with jax.named_scope(type(self).__name__):
      if isinstance(value, named_axes.NamedArrayBase):
        return named_axes.nmap(self.fn)(value)
      return self.fn(value)

  def treescope_color(self) -> str | tuple[str, str]:
    return formatting_util.color_from_string(repr(self.fn))


@struct.pytree_dataclass
class Softmax(layer_base.Layer):
  """Softmax taken jointly over one or more named axes.

  Attributes:
    axes: The axis name (or names) to normalize over.
  """

  axes: str | tuple[str, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )

  def __call__(
      self, inputs: named_axes.NamedArrayBase, /, **_unused_side_inputs: Any
  ) -> named_axes.NamedArrayBase:
    """Returns the softmax of `inputs` over `axes`; other axes come first."""
    axes = (self.axes,) if isinstance(self.axes, str) else tuple(self.axes)
    with jax.named_scope(type(self).__name__):
      if isinstance(inputs, named_axes.NamedArrayBase):
        _check_axes_present("Softmax", axes, inputs.named_shape)
      return named_axes.nmap(jax.nn.softmax)(
          inputs.untag(*axes), axis=tuple(range(len(axes)))
      ).tag(*axes)


@struct.pytree_dataclass
class CastToDType(layer_base.Layer):
  """Casts every array leaf of the input (named arrays included) to a dtype.

  Attributes:
    dtype: The target dtype.
  """

  dtype: jax.typing.DTypeLike = dataclasses.field(
      metadata={"pytree_node": False}
  )

  def __call__(self, value: Any, /, **_unused_side_inputs: Any) -> Any:
    """Returns `value` with every array leaf cast to `dtype`."""
    with jax.named_scope(type(self).__name__):
      return jax.tree_util.tree_map(lambda x: x.astype(self.dtype), value)


@struct.pytree_dataclass
class TanhSoftCap(layer_base.Layer):
  """Smoothly caps magnitudes: `tanh(x / soft_cap) * soft_cap`.

  Attributes:
    soft_cap: The cap (a float or a scalar array; a pytree child).
  """

  soft_cap: float | jax.Array

  def __call__(
      self, value: Any, /, **_unused_side_inputs: Any
  ) -> named_axes.NamedArrayBase:
    """Returns `tanh(value / soft_cap) * soft_cap` as a named array."""
    with jax.named_scope(type(self).__name__):
      return named_axes.nmap(jnp.tanh)(value / self.soft_cap) * self.soft_cap
