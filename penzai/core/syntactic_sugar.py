"""Syntactic sugar: `pz.slice[...]` builds indexers with slice syntax."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class SliceLike:
  """Returns whatever it is indexed with, so `slice[1:3] == slice(1, 3)`.

  Lets you write slices and tuples of indexers (e.g. `pz.slice[0, ::2, "x"]`)
  where a value rather than an indexing expression is needed.
  """

  def __getitem__(self, indexer: Any) -> Any:
    return indexer


slice = SliceLike()  # pylint: disable=redefined-builtin
