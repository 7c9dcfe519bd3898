"""`params` and `${...}` references: whole-value substitution and integer arithmetic.

An expression may use integer literals, parameter names, `+ - * //`, unary
minus and parentheses. Nothing else is evaluated. A bare `${name}` may stand
for a value of any type; arithmetic requires integers.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from penzai.dsl.errors import Path, SpecIssue, suggest
from penzai.dsl.loader import Expr, Locator

_TOKEN_RE = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z_0-9]*)|(//|[-+*()]))")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")


class RefError(Exception):
  """A reference could not be resolved; `kind` is its SpecIssue kind."""

  def __init__(self, kind: str, message: str):
    super().__init__(message)
    self.kind = kind
    self.message = message


class INVALID:
  """Placeholder left where a reference failed (validation skips it)."""

  def __repr__(self) -> str:
    return "<invalid reference>"


INVALID_VALUE = INVALID()


def _tokenize(text: str) -> list[str]:
  tokens: list[str] = []
  pos = 0
  text = text.rstrip()
  while pos < len(text):
    m = _TOKEN_RE.match(text, pos)
    if not m or m.end() == pos:
      raise RefError("bad_reference", f"invalid expression '${{{text}}}': unexpected {text[pos:].strip()[:10]!r}")
    tokens.append(m.group(0).strip())
    pos = m.end()
  return tokens


def evaluate(text: str, lookup: Callable[[str], Any]) -> Any:
  """Evaluates a `${...}` body with `lookup(name)` giving parameter values."""
  tokens = _tokenize(text)
  if not tokens:
    raise RefError("bad_reference", "empty reference '${}'")
  if len(tokens) == 1 and _IDENT_RE.match(tokens[0]):
    return lookup(tokens[0])
  pos = 0

  def peek() -> str | None:
    return tokens[pos] if pos < len(tokens) else None

  def take() -> str:
    nonlocal pos
    tok = tokens[pos]
    pos += 1
    return tok

  def as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise RefError(
          "bad_reference",
          f"arithmetic in '${{{text}}}' needs integers, but {what} is {value!r} ({type(value).__name__})",
      )
    return value

  def atom() -> int:
    tok = peek()
    if tok is None:
      raise RefError("bad_reference", f"invalid expression '${{{text}}}': unexpected end")
    take()
    if tok == "(":
      value = expr()
      if peek() != ")":
        raise RefError("bad_reference", f"invalid expression '${{{text}}}': missing ')'")
      take()
      return value
    if tok == "-":
      return -atom()
    if tok == "+":
      return atom()
    if tok.isdigit():
      return int(tok)
    if _IDENT_RE.match(tok):
      return as_int(lookup(tok), repr(tok))
    raise RefError("bad_reference", f"invalid expression '${{{text}}}': unexpected {tok!r}")

  def term() -> int:
    value = atom()
    while peek() in ("*", "//"):
      op = take()
      rhs = atom()
      if op == "*":
        value = value * rhs
      else:
        if rhs == 0:
          raise RefError("bad_reference", f"division by zero in '${{{text}}}'")
        value = value // rhs
      if abs(value) > 2**62:
        raise RefError("value", f"'${{{text}}}' is too large")
    return value

  def expr() -> int:
    value = term()
    while peek() in ("+", "-"):
      op = take()
      rhs = term()
      value = value + rhs if op == "+" else value - rhs
    return value

  result = expr()
  if pos != len(tokens):
    raise RefError("bad_reference", f"invalid expression '${{{text}}}': unexpected {tokens[pos]!r}")
  return result


def resolve_document(data: Any, locator: Locator) -> tuple[Any, list[SpecIssue]]:
  """Resolves `params` and every `${...}` in a loaded document.

  Returns the data with references replaced (failed ones become
  `INVALID_VALUE`) and the list of problems found.
  """
  issues: list[SpecIssue] = []
  if not isinstance(data, dict):
    return data, issues
  raw_params = data.get("params", {})
  if raw_params is None:
    raw_params = {}
  if not isinstance(raw_params, dict):
    return data, issues  # reported by schema validation
  for name in raw_params:
    if not _IDENT_RE.match(name):
      issues.append(locator.issue("value", f"parameter name {name!r} is not an identifier", ("params", name), at_key=True))

  resolved: dict[str, Any] = {}
  failed: set[str] = set()
  in_progress: list[str] = []

  def resolve_param(name: str) -> Any:
    if name in resolved:
      return resolved[name]
    if name in failed:
      raise _Failed()
    if name not in raw_params:
      raise RefError("bad_reference", f"unknown parameter {name!r}" + suggest(name, raw_params))
    if name in in_progress:
      cycle = " -> ".join(in_progress[in_progress.index(name):] + [name])
      raise RefError("reference_cycle", f"reference cycle: {cycle}")
    in_progress.append(name)
    try:
      value = substitute(raw_params[name], ("params", name))
    finally:
      in_progress.pop()
    if value is INVALID_VALUE:
      failed.add(name)
      raise _Failed()
    resolved[name] = value
    return value

  def substitute(value: Any, path: Path) -> Any:
    if isinstance(value, Expr):
      try:
        return evaluate(value.text, resolve_param)
      except RefError as e:
        issues.append(SpecIssue(e.kind, e.message, path, locator.file, value.line, value.column))
        return INVALID_VALUE
      except _Failed:
        return INVALID_VALUE
    if isinstance(value, dict):
      return {k: substitute(v, path + (k,)) for k, v in value.items()}
    if isinstance(value, list):
      return [substitute(v, path + (i,)) for i, v in enumerate(value)]
    return value

  for name in raw_params:
    if name not in resolved and name not in failed:
      try:
        resolve_param(name)
      except _Failed:
        pass
      except RefError as e:  # pragma: no cover - only cycles reach here
        issues.append(locator.issue(e.kind, e.message, ("params", name)))
  out = {}
  for key, value in data.items():
    if key == "params":
      out[key] = {k: resolved.get(k, INVALID_VALUE) for k in raw_params}
    else:
      out[key] = substitute(value, (key,))
  return out, issues


class _Failed(Exception):
  pass
