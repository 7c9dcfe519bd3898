"""Treescope rendering of shape-checking patterns (`ArraySpec`, `Wildcard`).

An `ArraySpec` renders collapsed as a compact summary such as
`<ArraySpec float32(2, {n}, *{batch…} | a:3)>`, and expanded (or in roundtrip
mode) as its constructor call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from treescope import dtype_util
from treescope import renderers
from treescope import rendering_parts

from penzai.core import shapecheck
from penzai.core._treescope_handlers import struct_handler

_SUMMARY_COLOR = "#1b3e73"


def _var_text(name: Any) -> str:
  """Formats a dimension variable name, e.g. `n` or `outer/inner`."""
  if isinstance(name, tuple):
    return "/".join(str(part) for part in name)
  return str(name)


def _dim_summary(dim: Any) -> str:
  if isinstance(dim, shapecheck.DimVar):
    return "{" + _var_text(dim.name) + "}"
  if isinstance(dim, shapecheck.MultiDimVar):
    return "*{" + _var_text(dim.name) + "…}"
  if isinstance(dim, shapecheck.KnownDim):
    return str(dim.size)
  return str(dim)


def _named_summary(key: Any, size: Any) -> str:
  if isinstance(key, shapecheck.MultiDimVar):
    return "**{" + _var_text(key.name) + ":…}"
  if isinstance(size, shapecheck.DimVar):
    return f"{key}:" + "{" + _var_text(size.name) + "}"
  if isinstance(size, shapecheck.KnownDim):
    return f"{key}:{size.size}"
  return f"{key}:{size}"


def arrayspec_summary(spec: shapecheck.ArraySpec) -> str:
  """Builds the collapsed one-line summary of an ArraySpec."""
  if spec.dtype is np.generic:
    dtype_name = "any"
  else:
    dtype_name = dtype_util.get_dtype_name(spec.dtype)
  dims = ", ".join(_dim_summary(d) for d in tuple(spec.shape))
  named = ", ".join(
      _named_summary(k, v) for k, v in dict(spec.named_shape).items()
  )
  if named:
    sep = " |" if dims else "|"
    named = " " + named
  else:
    sep = ""
  return f"<ArraySpec {dtype_name}({dims}{sep}{named})>"


def handle_arraystructures(
    node: Any,
    path: str | None,
    subtree_renderer: renderers.TreescopeSubtreeRenderer,
) -> Any:
  """Treescope handler for `Wildcard` and `ArraySpec` nodes."""
  if isinstance(node, shapecheck.Wildcard):
    if node.description is None:
      short = "*"
    else:
      short = f"<{node.description}>"
    return rendering_parts.build_one_line_tree_node(
        rendering_parts.roundtrip_condition(
            roundtrip=rendering_parts.text(
                f"penzai.core.shapecheck.Wildcard({node.description!r})"
            ),
            not_roundtrip=rendering_parts.text(short),
        ),
        path,
    )
  if isinstance(node, shapecheck.ArraySpec):
    constructor = struct_handler.handle_structs(node, path, subtree_renderer)
    assert isinstance(constructor, rendering_parts.RenderableAndLineAnnotations)
    summary = rendering_parts.custom_text_color(
        rendering_parts.text(arrayspec_summary(node)), _SUMMARY_COLOR
    )
    return rendering_parts.build_custom_foldable_tree_node(
        label=rendering_parts.fold_condition(
            collapsed=rendering_parts.roundtrip_condition(not_roundtrip=summary)
        ),
        contents=rendering_parts.roundtrip_condition(
            roundtrip=constructor.renderable,
            not_roundtrip=rendering_parts.fold_condition(
                expanded=constructor.renderable
            ),
        ),
        path=path,
        expand_state=rendering_parts.ExpandState.COLLAPSED,
    )
  return NotImplemented
