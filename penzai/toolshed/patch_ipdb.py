"""Rich display of values inside the IPython debugger.

`patch_ipdb()` makes `ipdb`/`%debug` show evaluated expressions with
IPython's display system (so treescope renderings appear) instead of
plain `repr`; `unpatch_ipdb()` restores the original behaviour.
"""

from __future__ import annotations

from typing import Any, Callable

import IPython.core.debugger
import IPython.display

old_displayhook: Callable[..., Any] | None = None


def displayhook_with_ipython(self: Any, obj: Any) -> None:
  """Debugger display hook that shows `obj` with `IPython.display.display`."""
  del self
  if obj is not None:
    IPython.display.display(obj)


def patch_ipdb(force: bool = False) -> None:
  """Replaces the IPython debugger's display hook with a rich-display one.

  Args:
    force: Whether to patch again even if already patched.

  Raises:
    ValueError: If already patched and `force` is False.
  """
  global old_displayhook
  if old_displayhook is not None and not force:
    raise ValueError(
        "IPython.core.debugger.Pdb.displayhook has already been patched!"
    )
  current = IPython.core.debugger.Pdb.displayhook
  if current is not displayhook_with_ipython:
    old_displayhook = current
  IPython.core.debugger.Pdb.displayhook = displayhook_with_ipython  # type: ignore[method-assign,assignment]


def unpatch_ipdb() -> None:
  """Restores the display hook saved by `patch_ipdb`."""
  global old_displayhook
  assert old_displayhook is not None, "patch_ipdb() has not been called."
  assert IPython.core.debugger.Pdb.displayhook is displayhook_with_ipython, (
      "IPython.core.debugger.Pdb.displayhook was changed by someone else"
      " after patch_ipdb()."
  )
  IPython.core.debugger.Pdb.displayhook = old_displayhook  # type: ignore[method-assign]
  old_displayhook = None
