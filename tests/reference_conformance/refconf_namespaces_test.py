"""Reference conformance: the `pz` alias namespaces, parsed from pz-namespace.md.

The tables of pz-namespace.md (one row per name, first cell the backticked
name) are read mechanically; the names they list are compared with the
attributes of our alias modules.
"""

from __future__ import annotations

import inspect
import re
import types

import pytest

from penzai import pz
import refconf_harness as h
import refconf_reference_text_test as reftext

_DOC = reftext.REFERENCE_DIR / "pz-namespace.md"

pytestmark = pytest.mark.skipif(not _DOC.is_file(), reason="reference not available")

# Signatures stated in pz-namespace.md for names that are not core objects.
CALLABLES: list[tuple[str, str]] = [
    (
        "penzai.pz:ContextualValue",
        "(initial_value: T, module: str | None = None, qualname: str | None = None)",
    ),
    (
        "penzai.pz:color_from_string",
        "(key_string: str, lightness: float = 0.785, chroma: float = 0.103,"
        " alpha: float = 1.0) -> str",
    ),
    (
        "penzai.pz:oklch_color",
        "(lightness: float, chroma: float, hue: float, alpha: float = 1.0) -> str",
    ),
    ("penzai.pz:dataclass_from_attributes", "(cls: type[T], **field_values) -> T"),
    ("penzai.pz:init_takes_fields", "(cls: type[Any]) -> bool"),
    ("penzai.pz:show", "(*args, wrap: bool = False, space_separated: bool = True)"),
    ("penzai.pz:enable_interactive_context", "()"),
    ("penzai.pz:disable_interactive_context", "()"),
    (
        "penzai.pz.ts:display",
        "(value: Any, ignore_exceptions: bool = False, roundtrip_mode: bool = False)",
    ),
    ("penzai.pz.ts:register_as_default", "(streaming: bool = True, compress_html: bool = True)"),
    ("penzai.pz.ts:basic_interactive_setup", "(autovisualize_arrays: bool = True)"),
]


def _section_rows(title_prefix: str) -> list[list[str]]:
  """Table rows (cells) of the section whose heading starts with the prefix."""
  text = _DOC.read_text()
  sections = re.split(r"^## ", text, flags=re.M)
  body = next(s for s in sections if s.startswith(title_prefix))
  rows = []
  for line in body.split("\n"):
    if line.startswith("| `"):
      rows.append([c.strip() for c in line.strip().strip("|").split("|")])
  return rows


def _names(cell: str) -> list[str]:
  return re.findall(r"`([A-Za-z_]\w*)`", cell)


def _public(module: types.ModuleType) -> set[str]:
  return {n for n in dir(module) if not n.startswith("__")}


@pytest.mark.parametrize("target,expected", CALLABLES, ids=[t for t, _ in CALLABLES])
def test_callable_signature(target: str, expected: str) -> None:
  h.check(h.callable_problems(target, expected), f"{target}{expected}", lambda: h.describe(target))


def test_table_covers_reference_signatures() -> None:
  table = {t.rpartition(":")[2]: reftext._key(s) for t, s in CALLABLES}
  problems = []
  signatures = reftext._reference_signatures("pz-namespace")
  assert len(signatures) >= 5
  for line, name, sig in signatures:
    if name not in table:
      problems.append(f"pz-namespace.md:{line}: {name}{sig} has no entry")
    elif reftext._key(sig) != table[name]:
      problems.append(f"pz-namespace.md:{line}: {name}{sig} differs from the table")
  assert not problems, "\n".join(problems)


def test_pz_exact_names_and_origins() -> None:
  rows = _section_rows("`pz.<name>`")
  assert len(rows) == 49
  assert _public(pz) == {_names(r[0])[0] for r in rows}
  problems = []
  for name_cell, kind, origin in rows:
    name = _names(name_cell)[0]
    obj = getattr(pz, name)
    module = re.match(r"`([\w.]+)`", origin)
    if kind.startswith("module"):
      target = re.search(r"`(penzai[\w.]*)`", kind)
      assert target is not None
      if obj.__name__ != target.group(1):
        problems.append(f"pz.{name} is {obj.__name__}, expected {target.group(1)}")
    elif kind.startswith(("class", "function", "exception", "Struct", "frozen")) and module:
      actual = getattr(obj, "__module__", None)
      if "functools.cache" in kind:
        actual = obj.__wrapped__.__module__
      if actual != module.group(1):
        problems.append(f"pz.{name}.__module__ is {actual}, expected {module.group(1)}")
  assert not problems, "\n".join(problems)


def test_pz_ts_exact_names() -> None:
  rows = _section_rows("`pz.ts.<name>`")
  assert _public(pz.ts) == {_names(r[0])[0] for r in rows}
  import treescope
  from treescope import figures

  problems = []
  for name_cell, _, source in rows:
    name = _names(name_cell)[0]
    src = source.strip("` ")
    if src in ("treescope", "treescope.figures"):
      theirs = getattr(treescope if src == "treescope" else figures, name)
      if getattr(pz.ts, name) is not theirs:
        problems.append(f"pz.ts.{name} is not {src}.{name}")
  assert not problems, "\n".join(problems)
  assert pz.ts.vocab_autovisualizer == treescope.ArrayAutovisualizer.for_tokenizer


@pytest.mark.parametrize(
    "section,module",
    [("`pz.nx.<name>`", pz.nx), ("`pz.chk.<name>`", pz.chk)],
)
def test_nx_and_chk_public_names(section: str, module: types.ModuleType) -> None:
  listed = {n for row in _section_rows(section) for n in _names(row[0])}
  assert listed - _public(module) == set()


def test_pz_nn_table() -> None:
  import importlib

  rows = _section_rows("`pz.nn.<name>`")
  expected = {}
  for module_cell, names_cell in rows:
    module = importlib.import_module(module_cell.strip("` "))
    for name in _names(names_cell):
      expected[name] = getattr(module, name)
  assert _public(pz.nn) == set(expected)
  assert [n for n, obj in expected.items() if getattr(pz.nn, n) is not obj] == []


def test_pz_has_no_typing_attribute() -> None:
  assert not hasattr(pz, "typing")
  assert inspect.ismodule(pz.nx) and inspect.ismodule(pz.chk)
