"""A mixin that lets dataclass keys be sorted together with strings and tuples.

JAX sorts dictionary keys when flattening, so every key type used in one dict
(e.g. variable labels) must be mutually orderable. Instances of
`AutoOrderedAcrossTypes` subclasses sort after all strings and tuples, and
across subclasses by class name, module and identity.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class AutoOrderedAcrossTypes:
  """Mixin giving frozen dataclasses a total order across types.

  Subclasses must be dataclasses with the default `eq=True, order=False`.
  """

  def _ordering_tuple(self) -> tuple[Any, ...]:
    """Sort key: class identity first, then the compared field values."""
    assert dataclasses.is_dataclass(self), (
        f"{type(self).__name__} uses AutoOrderedAcrossTypes but is not a"
        " dataclass"
    )
    cls = type(self)
    return (
        cls.__qualname__,
        cls.__module__,
        id(cls),
        *(
            getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.compare
        ),
    )

  def __lt__(self, other: Any) -> bool:
    if isinstance(other, (str, tuple)):
      return False
    if isinstance(other, AutoOrderedAcrossTypes):
      return self._ordering_tuple() < other._ordering_tuple()
    return NotImplemented

  def __le__(self, other: Any) -> bool:
    if isinstance(other, (str, tuple)):
      return False
    if isinstance(other, AutoOrderedAcrossTypes):
      return self._ordering_tuple() <= other._ordering_tuple()
    return NotImplemented

  def __gt__(self, other: Any) -> bool:
    if isinstance(other, (str, tuple)):
      return True
    if isinstance(other, AutoOrderedAcrossTypes):
      return self._ordering_tuple() > other._ordering_tuple()
    return NotImplemented

  def __ge__(self, other: Any) -> bool:
    if isinstance(other, (str, tuple)):
      return True
    if isinstance(other, AutoOrderedAcrossTypes):
      return self._ordering_tuple() >= other._ordering_tuple()
    return NotImplemented
