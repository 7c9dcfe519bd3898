"""Safe YAML loading that remembers the line and column of every key and value.

Only plain YAML data is accepted (mappings, sequences, strings, numbers,
booleans, null); tags that construct objects are rejected. `${...}` references
are turned into `Expr` markers (see `refs.py`) before YAML parsing so that
they may appear unquoted, even inside flow mappings like `{features: ${h}}`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import yaml

from penzai.dsl.errors import Path, SpecError, SpecIssue

_REF_RE = re.compile(r"\$\{[^{}\n]*\}")
_PLACEHOLDER = "\u00a7"  # "§": a plain-scalar character that YAML leaves alone.
_MAX_NODES = 200_000
_YAML12_FLOAT = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+$")
_SAFE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


@dataclasses.dataclass(frozen=True)
class Expr:
  """A `${...}` reference found in a document, resolved later against `params`."""

  text: str
  line: int
  column: int


@dataclasses.dataclass
class Locator:
  """Maps key paths of a loaded document to 1-based (line, column) positions."""

  file: str | None = None
  values: dict[Path, tuple[int, int]] = dataclasses.field(default_factory=dict)
  keys: dict[Path, tuple[int, int]] = dataclasses.field(default_factory=dict)

  def value_pos(self, path: Path) -> tuple[int, int] | None:
    """Position of the value at `path`, else of its nearest located ancestor."""
    path = tuple(path)
    while True:
      if path in self.values:
        return self.values[path]
      if not path:
        return None
      path = path[:-1]

  def key_pos(self, path: Path) -> tuple[int, int] | None:
    """Position of the mapping key naming `path` (falls back to the value position)."""
    path = tuple(path)
    if path in self.keys:
      return self.keys[path]
    return self.value_pos(path)

  def issue(self, kind: str, message: str, path: Path, at_key: bool = False) -> SpecIssue:
    """Builds a `SpecIssue` positioned at `path` in this document."""
    pos = self.key_pos(path) if at_key else self.value_pos(path)
    line, col = pos if pos else (None, None)
    return SpecIssue(kind, message, tuple(path), self.file, line, col)


@dataclasses.dataclass
class _Match:
  start: int
  end: int
  text: str
  line: int
  column: int


def _mask_references(text: str) -> tuple[str, list[_Match]]:
  """Replaces each `${...}` with same-length placeholders; returns the matches."""
  matches: list[_Match] = []
  pieces: list[str] = []
  last = 0
  line_starts = [0]
  for m in re.finditer("\n", text):
    line_starts.append(m.end())
  import bisect

  for m in _REF_RE.finditer(text):
    line_idx = bisect.bisect_right(line_starts, m.start()) - 1
    col = m.start() - line_starts[line_idx]
    matches.append(_Match(m.start(), m.end(), m.group(0), line_idx + 1, col + 1))
    pieces.append(text[last:m.start()])
    pieces.append(_PLACEHOLDER * (m.end() - m.start()))
    last = m.end()
  pieces.append(text[last:])
  return "".join(pieces), matches


# libyaml's parser is ~10x faster; both give the same nodes and character positions.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Converter:
  """Turns a composed YAML node graph into plain Python data plus a Locator."""

  def __init__(self, loader: Any, matches: list[_Match], locator: Locator):
    self.loader = loader
    self.matches = matches
    self.starts = [m.start for m in matches]
    self.locator = locator
    self.issues: list[SpecIssue] = []
    self.count = 0
    self.active: set[int] = set()

  def _issue(self, kind: str, message: str, path: Path, mark: Any) -> None:
    self.issues.append(
        SpecIssue(kind, message, path, self.locator.file, mark.line + 1, mark.column + 1)
    )

  def convert(self, node: yaml.Node, path: Path) -> Any:
    self.count += 1
    if self.count > _MAX_NODES:
      raise _TooLarge()
    mark = node.start_mark
    self.locator.values.setdefault(path, (mark.line + 1, mark.column + 1))
    if id(node) in self.active:
      self._issue("syntax", "recursive YAML alias is not allowed", path, mark)
      return None
    if isinstance(node, yaml.MappingNode):
      if node.tag != "tag:yaml.org,2002:map":
        self._issue("syntax", f"unsupported YAML tag {node.tag!r}", path, mark)
        return None
      self.active.add(id(node))
      out: dict[str, Any] = {}
      for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:merge":
          self._issue("syntax", "YAML merge keys ('<<') are not supported", path, key_node.start_mark)
          continue
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SAFE_TAGS:
          self._issue("syntax", "mapping keys must be plain scalars", path, key_node.start_mark)
          continue
        key = self.loader.construct_object(key_node)
        if self._refs_in(key_node):
          self._issue("syntax", "`${...}` cannot be used as a mapping key", path, key_node.start_mark)
          continue
        key = str(key) if not isinstance(key, str) else key
        kpath = path + (key,)
        if key in out:
          self._issue("syntax", f"duplicate key {key!r}", kpath, key_node.start_mark)
          continue
        self.locator.keys[kpath] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        out[key] = self.convert(value_node, kpath)
      self.active.discard(id(node))
      return out
    if isinstance(node, yaml.SequenceNode):
      if node.tag != "tag:yaml.org,2002:seq":
        self._issue("syntax", f"unsupported YAML tag {node.tag!r}", path, mark)
        return None
      self.active.add(id(node))
      items = [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
      self.active.discard(id(node))
      return items
    assert isinstance(node, yaml.ScalarNode)
    refs = self._refs_in(node)
    if refs:
      if len(refs) == 1 and node.value == _PLACEHOLDER * (refs[0].end - refs[0].start):
        m = refs[0]
        return Expr(m.text[2:-1].strip(), m.line, m.column)
      self._issue(
          "bad_reference",
          "`${...}` must stand for a whole value, not part of a string",
          path,
          mark,
      )
      return None
    if node.tag not in _SAFE_TAGS:
      self._issue("syntax", f"unsupported YAML tag {node.tag!r}", path, mark)
      return None
    value = self.loader.construct_object(node)
    if isinstance(value, str) and not node.style and _YAML12_FLOAT.match(value):
      value = float(value)  # YAML 1.2 reads `1e-6` as a number; PyYAML (1.1) does not.
    if isinstance(value, str) and "${" in value:
      self._issue("bad_reference", "malformed `${...}` reference (missing '}'?)", path, mark)
      return None
    return value

  def _refs_in(self, node: yaml.Node) -> list[_Match]:
    import bisect

    lo = bisect.bisect_left(self.starts, node.start_mark.index)
    hi = bisect.bisect_left(self.starts, node.end_mark.index)
    return self.matches[lo:hi]


class _TooLarge(Exception):
  pass


def parse_yaml(text: str, file: str | None = None) -> tuple[Any, Locator]:
  """Parses YAML text into plain data and a `Locator`; raises `SpecError` on bad YAML."""
  locator = Locator(file=file)
  if not isinstance(text, str):
    raise SpecError([SpecIssue("syntax", "document must be text", (), file, None, None)])
  masked, matches = _mask_references(text)
  try:
    loader = _SafeLoader(masked)
  except yaml.YAMLError as e:
    raise SpecError([SpecIssue("syntax", f"YAML error: {e}", (), file, None, None)]) from None
  try:
    try:
      node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
      mark = e.problem_mark or e.context_mark
      message = " ".join(str(p) for p in (e.context, e.problem) if p) or "invalid YAML"
      line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
      raise SpecError([SpecIssue("syntax", f"YAML syntax error: {message}", (), file, line, col)]) from None
    except (yaml.YAMLError, RecursionError) as e:
      raise SpecError([SpecIssue("syntax", f"YAML error: {e}", (), file, None, None)]) from None
    if node is None:
      raise SpecError([SpecIssue("syntax", "empty document", (), file, 1, 1)])
    conv = _Converter(loader, matches, locator)
    try:
      data = conv.convert(node, ())
    except _TooLarge:
      raise SpecError(
          [SpecIssue("syntax", f"document expands to more than {_MAX_NODES} nodes", (), file, 1, 1)]
      ) from None
    except RecursionError:
      raise SpecError([SpecIssue("syntax", "document is nested too deeply", (), file, 1, 1)]) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
      raise SpecError([SpecIssue("syntax", f"invalid YAML value: {e}", (), file, None, None)]) from None
    if conv.issues:
      raise SpecError(conv.issues)
    return data, locator
  finally:
    dispose = getattr(loader, "dispose", None)
    if dispose is not None:
      dispose()
