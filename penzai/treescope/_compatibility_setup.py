"""Rendering entry points that also support the legacy `__penzai_repr__`.

Objects written for the treescope that used to ship inside penzai define
`__penzai_repr__(path, subtree_renderer)` instead of `__treescope_repr__`.
The functions here wrap treescope's own entry points, extending the active
renderer with a handler that calls that legacy method.

The IPython entry points deliberately carry no return annotation so their
signatures read exactly as documented (`display(value, ...)` etc.).
"""

from __future__ import annotations

from typing import Any

import treescope
from treescope import renderers


def _handle_penzai_repr(
    node: Any, path: str | None, subtree_renderer: Any
) -> Any:
  """Treescope handler delegating to a legacy `__penzai_repr__` method."""
  method = getattr(type(node), "__penzai_repr__", None)
  if method is None or isinstance(node, type):
    return NotImplemented
  return node.__penzai_repr__(path, subtree_renderer)


def _extend_renderer(
    renderer: renderers.TreescopeRenderer,
) -> renderers.TreescopeRenderer:
  """Returns `renderer` with the legacy handler added (at most once)."""
  if _handle_penzai_repr in renderer.handlers:
    return renderer
  return renderer.extended_with(handlers=[_handle_penzai_repr])


def extended_renderer() -> renderers.TreescopeRenderer:
  """The active treescope renderer extended with `__penzai_repr__` support."""
  return _extend_renderer(treescope.active_renderer.get())


def show(*args: Any, wrap: bool = False, space_separated: bool = True):
  """Shows objects inline with rich display, like `print` (IPython only).

  Args:
    *args: Values to show; strings are shown as text.
    wrap: Whether to wrap at the end of the line.
    space_separated: Whether to put single spaces between the objects.

  Raises:
    RuntimeError: Outside of IPython.
  """
  with treescope.active_renderer.set_scoped(extended_renderer()):
    treescope.show(*args, wrap=wrap, space_separated=space_separated)


def display(
    value: Any, ignore_exceptions: bool = False, roundtrip_mode: bool = False
):
  """Displays a value as an interactively foldable object (IPython only).

  Args:
    value: Value to display.
    ignore_exceptions: Whether to show a fallback for subtrees that fail to
      render instead of raising.
    roundtrip_mode: Whether to start in roundtrip mode.

  Raises:
    RuntimeError: Outside of IPython.
  """
  with treescope.active_renderer.set_scoped(extended_renderer()):
    treescope.display(
        value, ignore_exceptions=ignore_exceptions, roundtrip_mode=roundtrip_mode
    )


def register_as_default(streaming: bool = True, compress_html: bool = True):
  """Registers treescope as IPython's default renderer, with legacy support.

  Raises:
    RuntimeError: Outside of IPython.
  """
  treescope.register_as_default(streaming=streaming, compress_html=compress_html)
  treescope.active_renderer.set_globally(extended_renderer())


def basic_interactive_setup(autovisualize_arrays: bool = True):
  """Sets up IPython for interactive use with treescope, with legacy support.

  Args:
    autovisualize_arrays: Whether to automatically visualize arrays.

  Raises:
    RuntimeError: Outside of IPython.
  """
  treescope.basic_interactive_setup(autovisualize_arrays=autovisualize_arrays)
  treescope.active_renderer.set_globally(extended_renderer())


def enable_interactive_context() -> None:
  """No-op kept for compatibility (interactive contexts are always enabled)."""
  return None


def disable_interactive_context() -> None:
  """No longer supported; always raises.

  Raises:
    RuntimeError: Always.
  """
  raise RuntimeError("Disabling interactive context is no longer supported.")


__all__ = [
    "basic_interactive_setup",
    "disable_interactive_context",
    "display",
    "enable_interactive_context",
    "register_as_default",
    "show",
]
