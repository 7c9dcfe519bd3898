"""Recovering a spec from a built `pz.nn` layer tree (placeholder, filled below)."""

from __future__ import annotations

from typing import Any


def spec_of(model: Any, name: str | None = None) -> Any:
  """Recovers a `ModelSpec` from a layer tree."""
  raise NotImplementedError
