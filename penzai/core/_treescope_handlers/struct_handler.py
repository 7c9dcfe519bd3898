"""Treescope rendering of `penzai.core.struct.Struct` objects.

Structs render as constructor calls (`Foo(a=1, b=2)`), colored by their
`treescope_color()`, with pytree-child field names styled differently from
static metadata fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from treescope import dataclass_util
from treescope import formatting_util
from treescope import renderers
from treescope import rendering_parts

from penzai.core import struct

_CHILD_FIELD_NAME_STYLE = "font-style: italic; color: #00225f;"


def render_struct_constructor(
    node: struct.Struct,
) -> rendering_parts.RenderableTreePart:
  """Renders the opening of a struct's constructor call, e.g. `Foo(`.

  In roundtrip mode the type name is module-qualified, and structs whose
  `__init__` does not take exactly their fields use `Foo.from_attributes(`.
  """
  type_name = rendering_parts.maybe_qualified_type_name(type(node))
  if dataclass_util.init_takes_fields(type(node)):
    return rendering_parts.siblings(type_name, "(")
  return rendering_parts.siblings(
      type_name,
      rendering_parts.roundtrip_condition(
          roundtrip=rendering_parts.text(".from_attributes")
      ),
      "(",
  )


def _struct_colors(node: struct.Struct) -> tuple[str | None, str | None]:
  """Parses a struct's `treescope_color()` into (color, pattern)."""
  return formatting_util.parse_simple_color_and_pattern_spec(
      node.treescope_color(), type(node).__name__
  )


def render_short_struct_summary(
    the_struct: struct.Struct,
) -> rendering_parts.RenderableTreePart:
  """Renders a one-line `TypeName(...)` summary with the struct's color."""
  color, pattern = _struct_colors(the_struct)
  return rendering_parts.build_one_line_tree_node(
      rendering_parts.siblings(
          rendering_parts.maybe_qualified_type_name(type(the_struct)), "(...)"
      ),
      background_color=color,
      background_pattern=pattern,
  ).renderable


def struct_attr_style_fn_for_fields(
    fields: Sequence[dataclasses.Field[Any]],
) -> Callable[[str], rendering_parts.RenderableTreePart]:
  """Returns a function rendering field names, styling pytree-child fields."""
  child_names = {f.name for f in fields if struct.is_pytree_node_field(f)}

  def attr_style_fn(name: str) -> rendering_parts.RenderableTreePart:
    if name in child_names:
      return rendering_parts.custom_style(
          rendering_parts.text(name), css_style=_CHILD_FIELD_NAME_STYLE
      )
    return rendering_parts.text(name)

  return attr_style_fn


def handle_structs(
    node: Any,
    path: str | None,
    subtree_renderer: renderers.TreescopeSubtreeRenderer,
) -> Any:
  """Treescope handler for Structs; returns NotImplemented for other nodes."""
  if not isinstance(node, struct.Struct) or not dataclasses.is_dataclass(node):
    return NotImplemented
  fields = dataclasses.fields(node)
  color, pattern = _struct_colors(node)
  return rendering_parts.build_foldable_tree_node_from_children(
      prefix=render_struct_constructor(node),
      children=rendering_parts.build_field_children(
          node,
          path,
          subtree_renderer,
          fields_or_attribute_names=fields,
          attr_style_fn=struct_attr_style_fn_for_fields(fields),
      ),
      suffix=")",
      path=path,
      background_color=color,
      background_pattern=pattern,
      child_type_single_and_plural=("field", "fields"),
  )
