"""Structured errors of the spec language: every problem carries a file position and key path."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Iterable, Sequence

PathElem = str | int
Path = tuple[PathElem, ...]


def format_path(path: Sequence[PathElem]) -> str:
  """Renders a key path as `model.layers[0].input_axes` (empty path → `<document>`)."""
  out = ""
  for elem in path:
    if isinstance(elem, int):
      out += f"[{elem}]"
    else:
      out += ("." if out else "") + str(elem)
  return out or "<document>"


# Names users bring from other configs (HuggingFace) that are spelled otherwise here.
_KNOWN_ALIASES = {"sliding_window": "window_size"}


def suggest(word: str, candidates: Iterable[str]) -> str:
  """Returns a `; did you mean 'x'?` suffix for the closest candidate, or ''."""
  pool = sorted(set(candidates))
  alias = _KNOWN_ALIASES.get(str(word))
  if alias is not None and alias in pool:
    return f"; did you mean {alias!r}?"
  for candidate in pool:  # The other direction: a required key spelled by its alias.
    if _KNOWN_ALIASES.get(candidate) == str(word):
      return f"; did you mean {candidate!r}?"
  matches = difflib.get_close_matches(str(word), pool, n=1, cutoff=0.6)
  return f"; did you mean {matches[0]!r}?" if matches else ""


@dataclasses.dataclass(frozen=True)
class SpecIssue:
  """One problem found in a spec document.

  `kind` is a short machine-readable category (`syntax`, `unknown_key`, `type`,
  `value`, `unknown_type`, `unknown_activation`, `bad_reference`,
  `reference_cycle`, `duplicate_id`, `duplicate_label`, `axis_missing`,
  `size_mismatch`, `symbol_conflict`, ...). `line` and `column` are 1-based and
  `None` for specs written in Python.
  """

  kind: str
  message: str
  path: Path = ()
  file: str | None = None
  line: int | None = None
  column: int | None = None

  def __str__(self) -> str:
    where = self.file or "<spec>"
    if self.line is not None:
      where += f":{self.line}:{self.column}"
    return f"{where}: {format_path(self.path)}: {self.message}"


class SpecError(ValueError):
  """Raised when a spec is invalid; `.errors` lists every problem found."""

  errors: list[SpecIssue]

  def __init__(self, errors: Sequence[SpecIssue]):
    self.errors = list(errors)
    super().__init__("\n".join(str(e) for e in self.errors) or "invalid spec")

  def __reduce__(self):  # keeps the structured list when pickled
    return (SpecError, (self.errors,))


class ShapeError(Exception):
  """Raised by a shape rule; the checker turns it into a `SpecIssue`.

  `field` names the spec field the problem is about (used for its position).
  """

  def __init__(self, message: str, kind: str = "shape", field: str | None = None):
    super().__init__(message)
    self.message = message
    self.kind = kind
    self.field = field
