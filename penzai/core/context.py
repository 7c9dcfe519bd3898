"""Scoped global values (kept at this path for code written before treescope split out).

`ContextualValue` is treescope's own class, the same object as `pz.ContextualValue`.
"""

from __future__ import annotations

from treescope.context import ContextualValue

from penzai.treescope._compatibility_setup import (
    disable_interactive_context,
    enable_interactive_context,
)

__all__ = [
    "ContextualValue",
    "disable_interactive_context",
    "enable_interactive_context",
]
