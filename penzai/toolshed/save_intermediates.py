"""Layers that record the values flowing through a model.

`SaveIntermediate` stores whatever passes through it in a `pz.StateVariable`;
`saving_all_intermediates` inserts such savers everywhere in a model so that
every intermediate value is captured exactly once.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

from penzai import pz


def _new_empty_state_var() -> pz.StateVariable[Any | None]:
  """Default factory: a fresh, empty state variable (one per saver)."""
  return pz.StateVariable(None)


@pz.pytree_dataclass
class SaveIntermediate(pz.nn.Layer):
  """Stores the value passing through it and returns that value unchanged.

  Attributes:
    saved: The variable holding the last value seen (None before any call).
  """

  saved: pz.StateVariable[Any | None] = dataclasses.field(
      default_factory=_new_empty_state_var
  )

  def __call__(self, value: Any, /, **_unused_side_inputs: Any) -> Any:
    """Saves `value` into `self.saved` and returns it."""
    self.saved.value = value
    return value


@pz.pytree_dataclass
class SaveIntermediateShape(pz.nn.Layer):
  """Stores only the shape/dtype structure of the value passing through it.

  Attributes:
    saved: The variable holding a leafless structure of `pz.chk.ArraySpec`s.
  """

  saved: pz.StateVariable[Any | None] = dataclasses.field(
      default_factory=_new_empty_state_var
  )

  def __call__(self, value: Any, /, **_unused_side_inputs: Any) -> Any:
    """Saves the array structure of `value` and returns `value`."""
    self.saved.value = pz.chk.as_array_structure(value)
    return value


_GROUP_TYPES = (pz.nn.Sequential, pz.nn.NamedGroup, pz.nn.CheckedSequential)


def _is_group(layer: Any) -> bool:
  return isinstance(layer, _GROUP_TYPES)


def _is_identity(layer: Any) -> bool:
  return isinstance(layer, pz.nn.Identity)


def saving_all_intermediates(
    model: pz.nn.Layer,
    intermediates_group: str | None = "intermediates",
    shapes_only: bool = False,
) -> pz.nn.Layer:
  """Returns a copy of `model` that saves every intermediate value once.

  Saver layers are inserted before and after every layer (only between
  sublayers inside groups, so consecutive layers share one saver). After
  calling the result, the saved values read, in tree order, as
  `[v.value for v in pz.select(m).at_instances_of(pz.StateVariable).get_sequence()]`.

  Args:
    model: The model to instrument.
    intermediates_group: Group of the scoped labels given to the savers'
      variables, or None for automatic labels.
    shapes_only: Whether to save only shapes and dtypes (`ArraySpec`s).

  Returns:
    The instrumented copy of `model` (sharing its parameters).
  """
  saver_type: Callable[[], pz.nn.Layer] = (
      SaveIntermediateShape if shapes_only else SaveIntermediate
  )

  def around(layer: Any) -> Any:
    if _is_group(layer):
      new_sublayers: list[Any] = [saver_type()]
      for sub in layer.sublayers:
        new_sublayers.append(inside(sub))
        if not _is_identity(sub):
          new_sublayers.append(saver_type())
      return dataclasses.replace(layer, sublayers=new_sublayers)
    if _is_identity(layer):
      return pz.nn.Sequential([saver_type(), inside(layer)])
    first = saver_type()
    body = inside(layer)
    return pz.nn.Sequential([first, body, saver_type()])

  def inside(layer: Any) -> Any:
    if _is_group(layer):
      count = len(layer.sublayers)
      new_sublayers: list[Any] = []
      for i, sub in enumerate(layer.sublayers):
        new_sublayers.append(inside(sub))
        if not _is_identity(sub) and i != count - 1:
          new_sublayers.append(saver_type())
      return dataclasses.replace(layer, sublayers=new_sublayers)
    return (
        pz.select(layer)
        .at_children()
        .at_instances_of(pz.nn.Layer)
        .apply(around)
    )

  if intermediates_group is None:
    return typing.cast(pz.nn.Layer, around(model))
  with pz.scoped_auto_state_var_labels(intermediates_group):
    return typing.cast(pz.nn.Layer, around(model))
