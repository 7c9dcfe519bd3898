"""Dataclass helpers (kept at this path for code written before treescope split out).

Both functions are treescope's own, the same objects as `pz.dataclass_from_attributes`
and `pz.init_takes_fields`.
"""

from __future__ import annotations

from treescope.dataclass_util import dataclass_from_attributes, init_takes_fields

__all__ = ["dataclass_from_attributes", "init_takes_fields"]
