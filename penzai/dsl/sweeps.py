"""Sweeps: many variants of a base spec, every one validated before any is built.

A sweep file names a `base` spec (relative to the sweep file) and overrides
given as dotted key paths (`params.hidden`, `model.layers.0.fn`), combined as
a cartesian `grid` and/or a lock-step `zip`.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from typing import Any, Mapping, Sequence

from penzai.dsl.errors import SpecError, SpecIssue
from penzai.dsl.loader import Locator, parse_yaml


@dataclasses.dataclass
class Variant:
  """One validated variant of a sweep: its overrides, spec and static report."""

  overrides: dict[str, Any]
  spec: Any
  report: Any

  @property
  def params(self) -> int:
    """Number of parameters (computed statically, nothing allocated)."""
    return self.report.total_params


def _set_path(data: Any, dotted: str, value: Any) -> None:
  keys: list[Any] = [int(k) if k.isdigit() else k for k in dotted.split(".")]
  cur = data
  for k in keys[:-1]:
    if isinstance(cur, dict):
      cur = cur.setdefault(k, {})
    elif isinstance(cur, list) and isinstance(k, int) and k < len(cur):
      cur = cur[k]
    else:
      raise KeyError(dotted)
  last = keys[-1]
  if isinstance(cur, dict):
    cur[last] = value
  elif isinstance(cur, list) and isinstance(last, int) and last < len(cur):
    cur[last] = value
  else:
    raise KeyError(dotted)


def path_problem(data: Any, dotted: str) -> str | None:
  """Why `dotted` is not an overridable key path of `data` (None if it is).

  Every key but the last must exist; the last may be new only where the
  schema checks it (a layer field), never under `params`, where a misspelled
  name would silently change nothing.
  """
  from penzai.dsl.errors import suggest

  keys: list[Any] = [int(k) if k.isdigit() else k for k in dotted.split(".")]
  cur = data
  for i, k in enumerate(keys):
    last = i == len(keys) - 1
    if isinstance(cur, dict):
      if k not in cur:
        if last and not (i == 1 and keys[0] == "params"):
          return None
        where = ".".join(str(x) for x in keys[:i]) or "the document"
        return f"no key {k!r} under {where}" + suggest(str(k), [str(x) for x in cur])
      cur = cur[k]
    elif isinstance(cur, list) and isinstance(k, int):
      if not 0 <= k < len(cur):
        return f"index {k} is out of range (the list has {len(cur)} items)"
      cur = cur[k]
    else:
      return f"{'.'.join(str(x) for x in keys[:i])} holds no keys"
  return None


def combinations(grid: Mapping[str, Sequence[Any]] | None, zip_: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
  """The override dicts of a grid (cartesian) times a zip (lock-step) sweep."""
  grid = dict(grid or {})
  zip_ = dict(zip_ or {})
  grid_combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else [{}]
  if zip_:
    lengths = {len(v) for v in zip_.values()}
    if len(lengths) != 1:
      raise ValueError(f"all `zip` lists must have the same length, got lengths {sorted(lengths)}")
    zip_combos = [dict(zip(zip_, values)) for values in zip(*zip_.values())]
  else:
    zip_combos = [{}]
  return [{**g, **z} for g in grid_combos for z in zip_combos]


def _base_data(base: Any) -> tuple[Any, Locator]:
  from penzai.dsl.serialize import to_data

  if isinstance(base, (str, os.PathLike)):
    path = os.fspath(base)
    try:
      with open(path, encoding="utf-8") as f:
        text = f.read()
    except OSError as e:
      raise SpecError([SpecIssue("io", f"cannot read base spec: {e}", (), path)]) from None
    return parse_yaml(text, path)
  from penzai.dsl import semantics

  raw = semantics.raw_data_of(base)
  if raw is not None:
    return raw, semantics.locator_of(base)
  return to_data(base), Locator(file=None)


def sweep(
    base: Any,
    grid: Mapping[str, Sequence[Any]] | None = None,
    zip: Mapping[str, Sequence[Any]] | None = None,  # noqa: A002 - matches the file key
) -> list[Variant]:
  """Expands a sweep and validates and statically checks every variant.

  Args:
    base: a `ModelSpec` or the path of a spec file.
    grid: dotted path -> values, combined as a cartesian product.
    zip: dotted path -> values, advanced together.

  Returns:
    The variants, in order; none has been built.

  Raises:
    SpecError: listing the problems of every invalid variant (each message
      starts with the variant's overrides). No variant is returned then.
  """
  from penzai.dsl.checker import static_check
  from penzai.dsl.document import validate_data

  data, locator = _base_data(base)
  bad = []
  for section, overrides in (("grid", grid or {}), ("zip", zip or {})):
    for key in overrides:
      problem = path_problem(data, key)
      if problem is not None:
        bad.append(SpecIssue("bad_reference", f"sweep key {key!r}: {problem}", (section, key)))
  if bad:
    raise SpecError(bad)
  try:
    combos = combinations(grid, zip)
  except ValueError as e:
    raise SpecError([SpecIssue("value", str(e), ("zip",))]) from None
  variants: list[Variant] = []
  issues: list[SpecIssue] = []
  for overrides in combos:
    variant_data = copy.deepcopy(data)
    label = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "base"
    try:
      for key, value in overrides.items():
        _set_path(variant_data, key, value)
    except KeyError as e:
      issues.append(SpecIssue("bad_reference", f"variant [{label}]: no key path {e.args[0]!r} in the base spec", ()))
      continue
    try:
      spec = validate_data(variant_data, locator)
      report = static_check(spec)
    except SpecError as err:
      for issue in err.errors:
        issues.append(dataclasses.replace(issue, message=f"variant [{label}]: {issue.message}"))
      continue
    variants.append(Variant(dict(overrides), spec, report))
  if issues:
    raise SpecError(issues)
  return variants


def load_sweep(path: str | os.PathLike[str]) -> list[Variant]:
  """Loads a sweep file (`base`, `grid`, `zip`) and runs `sweep`."""
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except OSError as e:
    raise SpecError([SpecIssue("io", f"cannot read sweep file: {e}", (), path)]) from None
  data, locator = parse_yaml(text, path)
  issues = []
  if not isinstance(data, dict):
    raise SpecError([locator.issue("type", "a sweep file must be a mapping", ())])
  for key in data:
    if key not in ("base", "grid", "zip"):
      from penzai.dsl.errors import suggest

      issues.append(locator.issue("unknown_key", f"unknown key {key!r}" + suggest(key, ["base", "grid", "zip"]), (key,), at_key=True))
  base = data.get("base")
  if not isinstance(base, str):
    issues.append(locator.issue("missing" if base is None else "type", "`base` must name a spec file", ("base",)))
  for key in ("grid", "zip"):
    section = data.get(key, {}) or {}
    if not isinstance(section, dict):
      issues.append(locator.issue("type", f"`{key}` must map dotted key paths to lists", (key,)))
      continue
    for k, v in section.items():
      if not isinstance(v, list) or not v:
        issues.append(locator.issue("type", f"`{key}.{k}` must be a non-empty list of values", (key, k)))
  if issues:
    raise SpecError(issues)
  assert isinstance(base, str)
  base_path = os.path.join(os.path.dirname(path), base)
  base_data, _ = _base_data(base_path)
  for key in ("grid", "zip"):
    for k in data.get(key) or {}:
      problem = path_problem(base_data, str(k))
      if problem is not None:
        issues.append(locator.issue("bad_reference", f"sweep key {k!r}: {problem}", (key, k), at_key=True))
  if issues:
    raise SpecError(issues)
  return sweep(base_path, grid=data.get("grid"), zip=data.get("zip"))


def format_table(variants: Sequence[Variant]) -> str:
  """A plain-text table of variants: overrides, output shape, parameter count."""
  from penzai.dsl.checker import format_value

  keys: list[str] = []
  for v in variants:
    keys.extend(k for k in v.overrides if k not in keys)
  rows = [tuple(["#", *keys, "output", "params"])]
  for i, v in enumerate(variants):
    rows.append(tuple([str(i), *[repr(v.overrides.get(k, "")) for k in keys], format_value(v.report.output), f"{v.params:,}"]))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


