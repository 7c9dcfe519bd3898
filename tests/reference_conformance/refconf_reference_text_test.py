"""Cross-checks the audit tables against the reference markdown itself.

The other `refconf_*_test.py` files hold the expected signatures as data. This
file parses /work/shared/reference/{core,nn,models,toolshed}.md and checks:

* every signature the reference states at the start of a heading or list item
  (a backticked ``name(params)`` with annotations, a ``self``/``cls`` receiver
  or a return annotation) appears in the tables with the same parameter names,
  kinds and defaults — so the tables are complete and faithfully transcribed;
* every ``class `Name(Bases)``` statement names a class of ours that subclasses
  those bases (and ``metaclass=`` is honoured).
"""

from __future__ import annotations

import abc
import collections.abc
import enum
import pathlib
import re
import typing
from typing import Any

import pytest

import refconf_core_test
import refconf_harness as h
import refconf_models_test
import refconf_nn_test
import refconf_toolshed_test

REFERENCE_DIR = pathlib.Path("/work/shared/reference")
DOCS = {
    "core": refconf_core_test,
    "nn": refconf_nn_test,
    "models": refconf_models_test,
    "toolshed": refconf_toolshed_test,
}
_SPAN = re.compile(r"`(@?[^`]*?)`")
_SIG = re.compile(r"^([A-Za-z_][A-Za-z_0-9]*)(\(.*\))(\s*->\s*.*)?$", re.S)
_STATEMENT_PREFIX = re.compile(r"^\s*(?:#+\s+(?:[\d.]+\s+)?|[-*]\s+)?(?:class\s+)?$")

pytestmark = pytest.mark.skipif(
    not REFERENCE_DIR.is_dir(), reason="reference documents not available"
)


def _statements(doc: str) -> list[tuple[int, bool, str, str]]:
  """(line, is_class, name, params) for code spans that open a heading/item."""
  text = (REFERENCE_DIR / f"{doc}.md").read_text()
  found = []
  for match in _SPAN.finditer(text):
    span = match.group(1)
    line_start = text.rfind("\n", 0, match.start()) + 1
    prefix = text[line_start : match.start()]
    if not _STATEMENT_PREFIX.match(prefix):
      continue
    stripped = re.sub(r"^@\S+\s+class\s+", "class ", span)
    is_class = prefix.strip().endswith("class") or stripped.startswith("class ")
    sig = _SIG.match(stripped.removeprefix("class ").replace("\n", " "))
    if sig is None:
      continue
    line = text.count("\n", 0, match.start()) + 1
    found.append((line, is_class, sig.group(1), sig.group(2) + (sig.group(3) or "")))
  return found


def _normalize_default(src: str | None) -> str | None:
  # Module qualifiers are presentation only (`jnp.float32` vs `float32`).
  return None if src is None else re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", src)


def _key(sig: str) -> list[tuple[str, Any, str | None]]:
  params = h.parse_signature(sig)
  if params and params[0].name in ("self", "cls") and params[0].kind != h.P.KEYWORD_ONLY:
    params = params[1:]
  return [
      (
          "*" if p.kind in (h.P.VAR_POSITIONAL, h.P.VAR_KEYWORD) else p.name,
          p.kind,
          _normalize_default(p.default_src),
      )
      for p in params
  ]


def _reference_signatures(doc: str) -> list[tuple[int, str, str]]:
  result = []
  for line, is_class, name, sig in _statements(doc):
    if is_class:
      continue
    try:
      params = h.parse_signature(sig)
    except SyntaxError:
      continue  # an expression such as an error constructor, not a signature
    stated = (
        any(p.annotation_src for p in params)
        or (params and params[0].name in ("self", "cls"))
        or "->" in sig
    )
    if stated:
      result.append((line, name, sig))
  return result


@pytest.mark.parametrize("doc", list(DOCS))
def test_tables_cover_every_reference_signature(doc: str) -> None:
  table: dict[str, list[Any]] = {}
  for target, sig in DOCS[doc].CALLABLES:
    if sig.strip() != "property":
      name = target.rpartition(":")[2].rpartition(".")[2]
      table.setdefault(name, []).append(_key(sig))
  signatures = _reference_signatures(doc)
  assert len(signatures) >= 10, "reference parsing found suspiciously few signatures"
  problems = []
  for line, name, sig in signatures:
    if name not in table:
      problems.append(f"{doc}.md:{line}: {name}{sig} has no entry in the audit tables")
    elif _key(sig) not in table[name]:
      problems.append(f"{doc}.md:{line}: {name}{sig} differs from every table entry")
  assert not problems, "\n".join(problems)


_BASE_OBJECTS: dict[str, Any] = {
    "Exception": Exception,
    "ABC": abc.ABC,
    "ABCMeta": abc.ABCMeta,
    "Generic": typing.Generic,
    "Protocol": typing.Protocol,
    "Mapping": collections.abc.Mapping,
    "Enum": enum.Enum,
    "NDArrayAdapter": None,  # resolved lazily below
}


def _class_index() -> dict[str, type]:
  index: dict[str, type] = {}
  for module in DOCS.values():
    for spec in module.CLASSES:
      cls = h.resolve(spec.target)
      index[cls.__name__] = cls
  return index


def _split_bases(text: str) -> list[str]:
  """Top-level comma split of ``"Generic[T], Struct"``."""
  parts, depth, current = [], 0, ""
  for ch in text:
    if ch in "[(":
      depth += 1
    elif ch in "])":
      depth -= 1
    if ch == "," and depth == 0:
      parts.append(current.strip())
      current = ""
    else:
      current += ch
  if current.strip():
    parts.append(current.strip())
  return parts


@pytest.mark.parametrize("doc", list(DOCS))
def test_reference_class_statements(doc: str) -> None:
  import treescope

  index = _class_index()
  objects = dict(_BASE_OBJECTS, NDArrayAdapter=treescope.ndarray_adapters.NDArrayAdapter)
  statements = [s for s in _statements(doc) if s[1]]
  assert statements, "reference parsing found no class statements"
  problems = []
  for line, _, name, params in statements:
    cls = index.get(name)
    if cls is None:
      problems.append(f"{doc}.md:{line}: class {name} has no entry in the audit tables")
      continue
    for base in _split_bases(params.strip()[1:-1]):
      if base.startswith("metaclass="):
        meta = index.get(base.partition("=")[2]) or objects.get(base.partition("=")[2])
        if meta is None or not isinstance(cls, meta):
          problems.append(f"{doc}.md:{line}: {name} should have {base}")
        continue
      short = re.sub(r"\[.*\]$", "", base).rpartition(".")[2]
      base_cls = index.get(short) or objects.get(short)
      if base_cls is None:
        problems.append(f"{doc}.md:{line}: cannot resolve base {base} of {name}")
      elif not issubclass(cls, base_cls):
        problems.append(f"{doc}.md:{line}: {name} is not a subclass of {base}")
  assert not problems, "\n".join(problems)


_FIELD_INTRO = re.compile(
    r"(?<![\w`])[Ff]ields?\b(?P<paren> \([^)]*\))?(?:, in order)?:?\s*(?=`|\(|$)", re.M
)
_FIELD_SPAN = re.compile(r"^([A-Za-z_]\w*)(?::\s*(.*?))?(?:\s*=\s*(.+))?$", re.S)
# Classes whose field list the reference states by reference to another class.
_IRREGULAR_FIELD_TEXT = {
    "KVCachingAttention",  # "the five sublayer fields as in `Attention`, then ..."
    "ApplyCausalSlidingWindowAttentionMask",  # "then the same four static fields"
}


def _field_clause(section: str) -> tuple[str, str] | None:
  """(parenthetical header, text of the field list) of a class section."""
  match = _FIELD_INTRO.search(section)
  if match is None:
    return None
  rest = section[match.end() :]
  out, in_code, depth = [], False, 0
  for k, ch in enumerate(rest):
    if ch == "`":
      in_code = not in_code
    elif not in_code:
      depth += (ch == "(") - (ch == ")")
      at_end = (
          rest.startswith("\n- ", k)
          or rest.startswith("\n\n", k)
          or rest.startswith(". ", k)
          or rest.startswith(".\n", k)
          or (ch == ";" and depth == 0)
          or depth < 0
          or rest.startswith(" Constructor", k)
      )
      if at_end:
        break
    out.append(ch)
  return match.group("paren") or "", "".join(out)


def _reference_fields(paren: str, clause: str) -> list[tuple[str, bool, str | None]]:
  """(name, static, default source) for each field the clause lists."""
  fields = []
  for span, after in re.findall(r"`([^`]*)`([^`]*)", clause):
    match = _FIELD_SPAN.match(span)
    if match is None:
      continue
    note = after.lower()
    static = bool(re.match(r"\s*\([^)]*\bstatic", note)) and "not static" not in note
    default = match.group(3)
    if "default_factory" in note:
      default = "__FACTORY__"
    elif default is not None:
      default = ast_normalize(default)
    fields.append((match.group(1), static, default))
  if "all static" in paren:
    fields = [(n, True, d) for n, _, d in fields]
  elif "first three static" in paren:
    fields = [(n, i < 3, d) for i, (n, _, d) in enumerate(fields)]
  return fields


def ast_normalize(src: str) -> str | None:
  import ast

  return _normalize_default(ast.unparse(ast.parse(src, mode="eval")))


@pytest.mark.parametrize("doc", list(DOCS))
def test_reference_field_lists(doc: str) -> None:
  from penzai.core import struct

  specs = {h.resolve(s.target).__name__: s for s in DOCS[doc].CLASSES}
  lines = (REFERENCE_DIR / f"{doc}.md").read_text().split("\n")
  statements = [s for s in _statements(doc) if s[1]]
  checked, problems = 0, []
  for i, (line, _, name, _) in enumerate(statements):
    stop = statements[i + 1][0] - 1 if i + 1 < len(statements) else len(lines)
    end = next((j for j in range(line, stop) if lines[j].startswith("#")), stop)
    clause = _field_clause("\n".join(lines[line - 1 : end]))
    if clause is None or name in _IRREGULAR_FIELD_TEXT:
      continue
    expected = _reference_fields(*clause)
    spec = specs.get(name)
    if spec is None or spec.fields is None:
      problems.append(f"{doc}.md:{line}: {name} lists fields but has no field table")
      continue
    checked += 1
    ours = h.parse_signature(spec.fields)
    pytree = struct.is_pytree_dataclass_type(h.resolve(spec.target))
    if [f[0] for f in expected] != [p.name for p in ours]:
      problems.append(
          f"{doc}.md:{line}: {name} fields {[f[0] for f in expected]} vs table"
          f" {[p.name for p in ours]}"
      )
      continue
    for (field, static, default), p in zip(expected, ours):
      if pytree and static != (p.annotation_src == "static"):
        problems.append(f"{doc}.md:{line}: {name}.{field} static={static} in the reference")
      want = None if p.default_src is None else _normalize_default(p.default_src)
      if default != want:
        problems.append(f"{doc}.md:{line}: {name}.{field} default {default} vs table {want}")
  assert checked >= 3, "reference parsing found suspiciously few field lists"
  assert not problems, "\n".join(problems)
