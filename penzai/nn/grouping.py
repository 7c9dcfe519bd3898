"""Grouping layers: sequences of layers, named groups, structure checks."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, Sequence

import jax
from treescope import formatting_util

from penzai.core import shapecheck
from penzai.core import struct
from penzai.core import tree_util
from penzai.nn import layer as layer_base

_GROUP_GRAY = "#cdcdcd"
_GROUP_GRAY_FILL = "color-mix(in oklab, #cdcdcd 25%, white)"


def _run_in_sequence(
    sublayers: Sequence[Any], value: Any, side_inputs: dict[str, Any]
) -> Any:
  """Feeds `value` through `sublayers` in order, each under scope `"<index>"`."""
  for i, sublayer in enumerate(sublayers):
    with jax.named_scope(f"{i}"):
      value = sublayer(value, **side_inputs)
  return value


def _accent_fill_pair(accent: str) -> tuple[str, str]:
  """A (border, fill) treescope color pair with a light fill of `accent`."""
  return (accent, f"color-mix(in oklab, {accent} 25%, white)")


def _type_color(cls: type[Any]) -> str:
  """The deterministic treescope color for a class, from its qualified name."""
  return formatting_util.color_from_string(
      f"{cls.__module__}.{cls.__qualname__}"
  )


@struct.pytree_dataclass
class Sequential(layer_base.Layer):
  """A group of layers called one after another.

  Subclass it (without new fields, using
  `has_implicitly_inherited_fields=True`) to give a block a type users can
  select, e.g. `Affine` or `LayerNorm`; subclasses keep the same call behavior.

  Attributes:
    sublayers: The layers (or any callable pytrees) to run, in order.
  """

  sublayers: list[layer_base.Layer]

  @typing.final
  def __call__(self, value: Any, /, **side_inputs: Any) -> Any:
    """Runs each sublayer on the previous output; all side inputs go to each."""
    with jax.named_scope(type(self).__name__):
      return _run_in_sequence(self.sublayers, value, side_inputs)

  def treescope_color(self) -> str | tuple[str, str]:
    if type(self) is Sequential:
      return (_GROUP_GRAY, _GROUP_GRAY_FILL)
    return _accent_fill_pair(_type_color(type(self)))


@typing.final
@struct.pytree_dataclass
class NamedGroup(layer_base.Layer):
  """A sequence of layers (possibly empty) labeled with a name for selection.

  Runs like `Sequential`; the name only identifies the group, e.g.
  `pz.select(m).at_instances_of(pz.nn.NamedGroup).where(lambda g: g.name == "gate")`.

  Attributes:
    name: The group's name.
    sublayers: The layers to run, in order.
  """

  name: str = dataclasses.field(metadata={"pytree_node": False})
  sublayers: Sequence[layer_base.Layer]

  def __call__(self, value: Any, /, **side_inputs: Any) -> Any:
    """Runs each sublayer on the previous output; all side inputs go to each."""
    with jax.named_scope(type(self).__name__):
      return _run_in_sequence(self.sublayers, value, side_inputs)

  def treescope_color(self) -> str | tuple[str, str]:
    return _accent_fill_pair(formatting_util.color_from_string(self.name))


@struct.pytree_dataclass
class CheckedSequential(layer_base.Layer):
  """A sequence of layers whose input and output structures are checked.

  The input is matched against `input_like` and the result against
  `output_like` (with the dimension variables bound by the input), using
  `pz.chk.check_structure`.

  Attributes:
    input_like: Expected structure of the input (e.g. a `pz.chk.ArraySpec`).
    output_like: Expected structure of the output.
    sublayers: The layers to run, in order.
  """

  input_like: shapecheck.StructureAnnotation = dataclasses.field(
      metadata={"pytree_node": False, "treescope_always_collapse": True}
  )
  output_like: shapecheck.StructureAnnotation = dataclasses.field(
      metadata={"pytree_node": False, "treescope_always_collapse": True}
  )
  sublayers: list[layer_base.Layer]

  @typing.final
  def __call__(self, value: Any, /, **side_inputs: Any) -> Any:
    """Checks the input, runs the sublayers, checks the output.

    Raises:
      pz.chk.StructureMismatchError: If the input or output does not match.
    """
    with jax.named_scope(type(self).__name__):
      dimvars = shapecheck.check_structure(
          value,
          self.input_like,
          error_prefix="While checking the input of a CheckedSequential:\n",
      )
      result = _run_in_sequence(self.sublayers, value, side_inputs)
      shapecheck.check_structure(
          result,
          self.output_like,
          known_vars=dimvars,
          error_prefix="While checking the output of a CheckedSequential:\n",
      )
      return result

  def treescope_color(self) -> str | tuple[str, str]:
    if type(self) is CheckedSequential:
      return _GROUP_GRAY
    return (_type_color(type(self)), _GROUP_GRAY)


@struct.pytree_dataclass
class Identity(layer_base.Layer):
  """A layer that returns its input unchanged."""

  @typing.final
  def __call__(self, value: Any, /, **_unused_side_inputs: Any) -> Any:
    """Returns `value` unchanged."""
    return value

  def treescope_color(self) -> str | tuple[str, str]:
    return (_GROUP_GRAY, _GROUP_GRAY_FILL)


@typing.final
@struct.pytree_dataclass
class CheckStructure(layer_base.Layer):
  """A layer that checks the structure of the value passing through it.

  Attributes:
    expected: Expected structure (e.g. a tree of `pz.chk.ArraySpec`).
  """

  expected: Any

  def __call__(self, value: Any, /, **_unused_side_inputs: Any) -> Any:
    """Returns `value` after checking it against `expected`.

    Raises:
      pz.chk.StructureMismatchError: If the value does not match.
    """
    with jax.named_scope(type(self).__name__):
      shapecheck.check_structure(value, self.expected)
    return value

  def treescope_color(self) -> str | tuple[str, str]:
    return _GROUP_GRAY


def is_sequential_or_named(tree: Any) -> bool:
  """True for `Sequential`, `CheckedSequential`, `NamedGroup` (or subclasses)."""
  return isinstance(tree, (Sequential, CheckedSequential, NamedGroup))


def is_anonymous_sequential(tree: Any) -> bool:
  """True if the node is exactly a `Sequential`, not a named subclass."""
  return type(tree) is Sequential  # pylint: disable=unidiomatic-typecheck


def inline_groups(
    tree: Any,
    parent_filter: Callable[[Any], bool],
    child_filter: Callable[[Any], bool],
) -> Any:
  """Splices sequential groups into their parent groups, bottom-up.

  Every group node (sequential or named) accepted by `parent_filter` gets each
  of its sublayers that is a group accepted by `child_filter` replaced by that
  sublayer's own (already processed) sublayers.

  Args:
    tree: The tree to rewrite (any pytree).
    parent_filter: Which group nodes may absorb their children.
    child_filter: Which child groups get inlined.

  Returns:
    A rewritten copy of `tree` (variables are shared, not copied).
  """

  def process(node: Any) -> Any:
    flat = tree_util.tree_flatten_exactly_one_level(node)
    if flat is not None:
      keyed_children, treedef = flat
      node = treedef.unflatten([process(child) for _, child in keyed_children])
    if is_sequential_or_named(node) and parent_filter(node):
      new_sublayers: list[Any] = []
      for sublayer in node.sublayers:
        if is_sequential_or_named(sublayer) and child_filter(sublayer):
          new_sublayers.extend(sublayer.sublayers)
        else:
          new_sublayers.append(sublayer)
      return dataclasses.replace(node, sublayers=new_sublayers)
    return node

  return process(tree)


def inline_anonymous_sequentials(tree: Any) -> Any:
  """Inlines every plain `Sequential` nested directly inside a group node.

  Subclass instances (e.g. `Affine`) and `NamedGroup`s stay as nodes; a root
  plain `Sequential` stays too.
  """
  return inline_groups(
      tree,
      parent_filter=is_sequential_or_named,
      child_filter=is_anonymous_sequential,
  )
