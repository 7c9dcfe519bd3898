"""The document model (`ModelSpec`) and loading: YAML -> references -> schema validation.

`loads`/`load` run the first three checking steps of the language (YAML
syntax, `${...}` references, schema) and report every error found, each with
its file position and key path.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from penzai.dsl.errors import Path, SpecError, SpecIssue, suggest
from penzai.dsl.loader import Locator, parse_yaml
from penzai.dsl.nodes import DType, LayerSpec, NodeBase
from penzai.dsl.refs import INVALID, resolve_document

Symbol = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class TensorSpec(BaseModel):
  """Named-axis contract of one input: axis sizes (int or symbol) and dtype."""

  model_config = ConfigDict(extra="forbid", frozen=True)
  named_shape: dict[str, Annotated[int, Field(ge=1)] | Symbol] = Field(
      description="Axis name -> size: an integer, or an identifier naming a symbolic size."
  )
  dtype: DType = Field("float32", description="Array dtype.")


class ModelSpec(BaseModel):
  """A whole spec document: name, params, input contracts and the root layer node."""

  model_config = ConfigDict(extra="forbid", frozen=True)
  spec_version: Literal[1] = Field(1, description="Version of the spec language (1).")
  name: Annotated[str, StringConstraints(pattern=r"^[^.\s]*$")] = Field(
      "model", description="Parameter-name prefix of the whole model."
  )
  params: dict[str, Any] = Field(
      default_factory=dict, description="Named constants, referenced as `${name}`."
  )
  input: TensorSpec = Field(description="Contract of the positional input.")
  side_inputs: dict[str, TensorSpec] = Field(
      default_factory=dict, description="Contracts of keyword side inputs (e.g. token_positions)."
  )
  model: LayerSpec = Field(description="The root layer node.")


_TOP_KEYS = tuple(ModelSpec.model_fields)


def _walk_loc(data: Any, loc: tuple[Any, ...], missing: bool) -> tuple[Path, int | None]:
  """Maps a Pydantic error location onto a document key path.

  Union-member tags in `loc` that are not keys of the data are dropped.
  For `missing` errors the final (absent) key is kept. Returns the path and
  the path length at which the first union tag was dropped (None if none).
  """
  path: list[str | int] = []
  skip_at: int | None = None
  cur = data
  for i, elem in enumerate(loc):
    if isinstance(cur, dict) and elem in cur:
      path.append(elem)
      cur = cur[elem]
    elif isinstance(cur, list) and isinstance(elem, int) and 0 <= elem < len(cur):
      path.append(elem)
      cur = cur[elem]
    elif isinstance(cur, NodeBase) and isinstance(elem, str) and elem in type(cur).model_fields:
      path.append(elem)
      cur = getattr(cur, elem)
    elif missing and i == len(loc) - 1 and isinstance(elem, str) and isinstance(cur, dict):
      path.append(elem)
    elif skip_at is None:
      skip_at = len(path)
  return tuple(path), skip_at


def _fields_at(data: Any, path: Path) -> list[str]:
  """Known field names of the node at `path` (for did-you-mean on unknown keys)."""
  from penzai.dsl import registry

  if len(path) == 0:
    return list(_TOP_KEYS)
  cur: Any = data
  for elem in path:
    try:
      cur = cur[elem]
    except (KeyError, IndexError, TypeError):
      return []
  if isinstance(cur, dict) and isinstance(cur.get("type"), str):
    entry = registry.layer_types().get(cur["type"])
    if entry is not None:
      variant = registry.variants().get(cur["type"])
      cls = entry.spec_cls
      if variant is not None and cur.get(variant[0]) in variant[1]:
        cls = variant[1][cur[variant[0]]]
      return list(cls.model_fields)
  if path in (("input",),) or (len(path) == 2 and path[0] == "side_inputs"):
    return ["named_shape", "dtype"]
  return []


def _union_filter(entries: list[tuple[Any, Path, int | None]]) -> list[tuple[Any, Path, int | None]]:
  """Keeps the errors of the union member that got furthest into a value.

  When a value fails every member of a union (e.g. `'global' | {window_size}
  | list`), members that rejected the value's *kind* are noise if another
  member accepted the kind and complained about its contents.
  """
  deep_unions = {p[:skip] for _, p, skip in entries if skip is not None and len(p) > skip}
  return [
      (e, p, skip) for e, p, skip in entries
      if not (skip is not None and len(p) == skip and p[:skip] in deep_unions)
  ]


def pydantic_issues(err: ValidationError, data: Any, locator: Locator) -> list[SpecIssue]:
  """Converts Pydantic validation errors into positioned `SpecIssue`s (deduplicated)."""
  entries = []
  for e in err.errors(include_url=False):
    if isinstance(e.get("input"), INVALID):
      continue  # already reported by reference resolution
    path, skip = _walk_loc(data, tuple(e["loc"]), e["type"] == "missing")
    entries.append((e, path, skip))
  entries = _union_filter(entries)
  missing_keys: dict[Path, set[str]] = {}
  unknown_keys: dict[Path, set[str]] = {}
  for e, path, _ in entries:
    if e["type"] == "missing" and path:
      missing_keys.setdefault(path[:-1], set()).add(str(path[-1]))
    elif e["type"] == "extra_forbidden" and path:
      unknown_keys.setdefault(path[:-1], set()).add(str(path[-1]))

  issues: list[SpecIssue] = []
  shallow: dict[Path, list[str]] = {}
  seen: set[Path] = set()
  for e, path, skip in entries:
    etype = e["type"]
    at_key = False
    message = e["msg"]
    kind = "type"
    if etype == "extra_forbidden":
      kind = "unknown_key"
      at_key = True
      key = path[-1] if path else "?"
      parent = path[:-1]
      candidates = set(_fields_at(data, parent)) | missing_keys.get(parent, set())
      other = _other_variant_with(data, parent, str(key))
      if other is not None:
        type_name, field, mine, theirs = other
        needed = sorted(missing_keys.get(parent, set()))
        message = (f"unknown key {key!r}: it is a field of {type_name} {field} {theirs!r}, not {mine!r}"
                   + (f"; {field} {mine!r} needs {', '.join(needed)}" if needed else ""))
      else:
        message = f"unknown key {key!r}" + suggest(str(key), candidates)
    elif etype == "missing":
      key = path[-1] if path else "?"
      parent = path[:-1]
      # A misspelled required key is one mistake: keep the "did you mean" error only.
      if suggest(str(key), unknown_keys.get(parent, set())):
        continue
      if path + ("<missing>",) in seen:
        continue
      seen.add(path + ("<missing>",))
      issues.append(locator.issue("missing", f"missing required key {key!r}", parent))
      continue
    elif etype == "unknown_type":
      kind = "unknown_type"
      path = path + ("type",)
    elif etype == "missing_type":
      kind = "missing"
    elif etype in ("unknown_variant", "missing_variant"):
      kind = "value"
      if etype == "unknown_variant":
        path = path + ("variant",)
    elif etype == "unknown_activation":
      kind = "unknown_activation"
    elif etype == "unknown_initializer":
      kind = "value"
    elif etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal",
                   "too_short", "too_long", "string_pattern_mismatch", "literal_error"):
      kind = "value"
      got = e.get("input")
      if etype == "literal_error" and isinstance(got, str):
        expected = e.get("ctx", {}).get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",")]
        message += suggest(got, [o for o in options if o])
      if not isinstance(got, (dict, list)) and etype.startswith(("greater", "less")):
        message = f"{got!r} is out of range: {message}"
    else:
      got = e.get("input")
      if not isinstance(got, (dict, list)) and not isinstance(got, NodeBase):
        message = f"{message} (got {got!r})"
    if skip is not None and len(path) == skip:
      # Every member of a union rejected the value itself: one combined error.
      shallow.setdefault(path, []).append(e["msg"])
      if path in seen:
        continue
    if path in seen:
      continue
    seen.add(path)
    issues.append(locator.issue(kind, message, path, at_key=at_key))
  for i, issue in enumerate(issues):
    msgs = shallow.get(issue.path)
    if msgs and len(msgs) > 1:
      got = _value_at(data, issue.path)
      combined = "; or ".join(dict.fromkeys(m[0].lower() + m[1:] if m else m for m in msgs))
      issues[i] = dataclasses.replace(issue, kind="type", message=f"invalid value {got!r}: expected {combined}")
  return issues


def _other_variant_with(data: Any, path: Path, key: str) -> tuple[str, str, str, str] | None:
  """(type, variant field, this variant, other variant) when `key` belongs to another variant."""
  from penzai.dsl import registry

  node = _value_at(data, path)
  if not isinstance(node, dict) or not isinstance(node.get("type"), str):
    return None
  info = registry.variants().get(node["type"])
  if info is None:
    return None
  field, choices = info
  mine = node.get(field)
  for name, cls in choices.items():
    if name != mine and key in cls.model_fields:
      return node["type"], field, str(mine), name
  return None


def _value_at(data: Any, path: Path) -> Any:
  cur = data
  for elem in path:
    try:
      cur = cur[elem]
    except (KeyError, IndexError, TypeError):
      return None
  return cur


def validate_data(data: Any, locator: Locator | None = None) -> ModelSpec:
  """Resolves references in loaded data and validates it into a `ModelSpec`."""
  from penzai.dsl import builtins  # noqa: F401  (registers built-in types)

  locator = locator or Locator()
  if not isinstance(data, dict):
    raise SpecError([locator.issue("type", f"a spec document must be a mapping, got {type(data).__name__}", ())])
  raw = data
  data, issues = resolve_document(data, locator)
  try:
    spec = ModelSpec.model_validate(data)
  except ValidationError as err:
    issues.extend(pydantic_issues(err, data, locator))
    raise SpecError(_sorted(issues)) from None
  if issues:
    raise SpecError(_sorted(issues))
  from penzai.dsl import semantics

  semantics.attach_locator(spec, locator, raw)
  return spec


def _sorted(issues: list[SpecIssue]) -> list[SpecIssue]:
  return sorted(issues, key=lambda i: (i.line or 0, i.column or 0))


def loads(text: str, file: str | None = None) -> ModelSpec:
  """Parses and validates a spec document from YAML text.

  Raises:
    SpecError: with every problem found (syntax, references, schema).
  """
  data, locator = parse_yaml(text, file or "<string>")
  return validate_data(data, locator)


def load(path: str | os.PathLike[str]) -> ModelSpec:
  """Reads, parses and validates a spec file; raises `SpecError` listing every problem."""
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise SpecError([SpecIssue("io", f"cannot read spec file: {e}", (), path, None, None)]) from None
  return loads(text, path)
