"""Treescope rendering of `Selection` objects with highlighted selected nodes.

A selection renders as `pz.select(<tree>).at_keypaths(<keypaths>)`, where the
tree is the deselected value with every selected node drawn inside a cyan box
headed `# Selected:` and the layout expanded so that the selected nodes are
visible.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import jax
from treescope import context
from treescope import layout_algorithms
from treescope import lowering
from treescope import rendering_parts

from penzai.core import selectors
from penzai.treescope import _compatibility_setup

_BOX_STYLE = "border: 2px solid cyan; border-left: 2ch solid cyan;"
_SELECTED_COMMENT_STYLE = "color: darkcyan; font-weight: bold;"


@dataclasses.dataclass
class SelectedNodeTracker:
  """State shared by the wrapper hook while a selection is being rendered.

  Attributes:
    selected_node_paths: Rendered path strings (`jax.tree_util.keystr`) of
      the selected nodes.
    visible_boundary: Whether to draw boxes around selected nodes.
    rendered_node_counts: How many times each selected path was rendered.
  """

  selected_node_paths: set[str]
  visible_boundary: bool
  rendered_node_counts: collections.Counter[str] = dataclasses.field(
      default_factory=collections.Counter
  )


@dataclasses.dataclass(frozen=True)
class SelectionBoundaryLayoutMark:
  """Layout mark placed on selected nodes so layout can expand to them."""


_active_tracker: context.ContextualValue[SelectedNodeTracker | None] = (
    context.ContextualValue(
        module=__name__, qualname="_active_tracker", initial_value=None
    )
)


def is_rendering_a_selection() -> bool:
  """True while a Selection's selected nodes are being rendered."""
  return _active_tracker.get() is not None


def _wrap_selected_nodes(node: Any, path: str | None, node_renderer: Any) -> Any:
  """Wrapper hook marking (and boxing) nodes whose path is selected."""
  tracker = _active_tracker.get()
  if tracker is None or path is None or path not in tracker.selected_node_paths:
    return NotImplemented
  tracker.rendered_node_counts[path] += 1
  rendering = node_renderer(node, path=path)
  marked = rendering_parts.with_layout_mark(
      rendering.renderable, SelectionBoundaryLayoutMark()
  )
  if not tracker.visible_boundary:
    return rendering_parts.RenderableAndLineAnnotations(
        renderable=marked, annotations=rendering.annotations
    )
  box = rendering_parts.in_outlined_box(
      rendering_parts.on_separate_lines([
          rendering_parts.fold_condition(
              expanded=rendering_parts.custom_style(
                  rendering_parts.text("# Selected:"),
                  css_style=_SELECTED_COMMENT_STYLE,
              )
          ),
          rendering_parts.build_full_line_with_annotations(
              rendering_parts.RenderableAndLineAnnotations(
                  renderable=marked, annotations=rendering.annotations
              )
          ),
      ]),
      css_style=_BOX_STYLE,
  )
  return rendering_parts.build_custom_foldable_tree_node(
      contents=box,
      expand_state=rendering_parts.ExpandState.EXPANDED,
  )


def _warning_lines(
    expected: dict[str, Any], counts: collections.Counter[str]
) -> list[rendering_parts.RenderableTreePart]:
  """Comment lines about selected paths rendered zero or several times."""
  lines = []
  for path_str, keypath in expected.items():
    count = counts.get(path_str, 0)
    if count == 0:
      message = (
          f"# Warning: Selected node at {keypath!r} was not rendered! (It may"
          " be hidden by a custom renderer.)"
      )
    elif count > 1:
      message = (
          f"# Warning: Selected node at {keypath!r} was rendered {count}"
          " times! (Its rendered path may be ambiguous.)"
      )
    else:
      continue
    lines.append(rendering_parts.comment_color(rendering_parts.text(message)))
  return lines


def render_selection_to_foldable_representation(
    selection: selectors.Selection,
    visible_selection: bool = True,
    ignore_exceptions: bool = False,
) -> rendering_parts.RenderableTreePart:
  """Renders a selection, highlighting its selected nodes.

  Args:
    selection: The selection to render.
    visible_selection: If True, renders `pz.select(...).at_keypaths(...)` with
      boxes around selected nodes; if False, renders just the deselected value
      with the selected nodes expanded.
    ignore_exceptions: Whether to render a fallback for subtrees that fail to
      render instead of raising.

  Returns:
    A treescope renderable part for the whole selection.
  """
  keypaths = selection.get_keypaths()
  expected = {jax.tree_util.keystr(k): k for k in keypaths}
  tracker = SelectedNodeTracker(
      selected_node_paths=set(expected), visible_boundary=visible_selection
  )
  base_renderer = _compatibility_setup.extended_renderer()
  renderer = base_renderer.extended_with(wrapper_hooks=[_wrap_selected_nodes])
  with _active_tracker.set_scoped(tracker):
    tree_rendering = renderer.to_foldable_representation(
        selection.deselect(), ignore_exceptions=ignore_exceptions
    )
  tree_ir = rendering_parts.build_full_line_with_annotations(tree_rendering)
  layout_algorithms.expand_to_layout_marks(
      tree_ir, [SelectionBoundaryLayoutMark()], collapse_weak_others=True
  )
  layout_algorithms.expand_for_balanced_layout(tree_ir)
  warnings = _warning_lines(expected, tracker.rendered_node_counts)

  if not visible_selection:
    if warnings:
      return rendering_parts.on_separate_lines([*warnings, tree_ir])
    return tree_ir

  keypath_ir = rendering_parts.build_full_line_with_annotations(
      base_renderer.to_foldable_representation(
          keypaths, ignore_exceptions=ignore_exceptions, root_keypath=None
      )
  )
  layout_algorithms.expand_for_balanced_layout(keypath_ir)
  count = len(keypaths)
  keypath_foldable = rendering_parts.build_custom_foldable_tree_node(
      label=rendering_parts.comment_color(
          rendering_parts.fold_condition(
              collapsed=rendering_parts.text(
                  f"<{count} subtrees, highlighted above>"
              ),
              expanded=rendering_parts.text(
                  f"# {count} subtrees, highlighted above"
              ),
          )
      ),
      contents=rendering_parts.fold_condition(
          expanded=rendering_parts.indented_children([keypath_ir])
      ),
      expand_state=rendering_parts.ExpandState.COLLAPSED,
  ).renderable
  return rendering_parts.on_separate_lines([
      *warnings,
      rendering_parts.comment_color(rendering_parts.text("pz.select(")),
      rendering_parts.indented_children([tree_ir]),
      rendering_parts.siblings(
          rendering_parts.comment_color(rendering_parts.text(").at_keypaths(")),
          keypath_foldable,
          rendering_parts.comment_color(rendering_parts.text(")")),
      ),
  ])


def display_selection_streaming(
    selection: selectors.Selection,
    visible_selection: bool = True,
    ignore_exceptions: bool = False,
) -> None:
  """Displays a selection in IPython (see `render_selection_to_foldable_representation`).

  Raises:
    ModuleNotFoundError: If IPython is not installed.
  """
  import IPython  # pylint: disable=g-import-not-at-top,unused-import

  del IPython
  with lowering.collecting_deferred_renderings() as deferreds:
    root = render_selection_to_foldable_representation(
        selection,
        visible_selection=visible_selection,
        ignore_exceptions=ignore_exceptions,
    )
  lowering.display_streaming_as_root(
      root, deferreds, roundtrip=False, ignore_exceptions=ignore_exceptions
  )
