"""Safe YAML loading with positions, and `${...}` resolution."""

import pytest

from penzai import dsl
from penzai.dsl import loader, refs


def test_positions_of_keys_and_values():
  data, loc = loader.parse_yaml("a:\n  b: [1, {c: 2}]\n", "f.yaml")
  assert data == {"a": {"b": [1, {"c": 2}]}}
  assert loc.key_pos(("a", "b")) == (2, 3)
  assert loc.value_pos(("a", "b", 1, "c")) == (2, 14)
  assert loc.value_pos(("a", "b", 1, "missing")) == (2, 10)  # nearest ancestor


def test_unquoted_reference_inside_flow_mapping():
  data, _ = loader.parse_yaml("x: {features: ${h * 4}, y: 1}\n", "f")
  assert data["x"]["features"] == loader.Expr("h * 4", 1, 15)


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: !!python/object:os.system ls\n", "unsupported YAML tag"),
        ("a: !custom 3\n", "unsupported YAML tag"),
        ("a: &x [*x]\n", "recursive YAML alias"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("a: pre${x}\n", "whole value"),
        ("<<: {a: 1}\n", "merge keys"),
        ("a: 2001-01-01\n", "unsupported YAML tag"),
        ("", "empty document"),
        ("a: 1\n---\nb: 2\n", "YAML syntax error"),
    ],
)
def test_unsafe_or_malformed_yaml_is_rejected(text, message):
  with pytest.raises(dsl.SpecError) as info:
    loader.parse_yaml(text, "f")
  assert message in str(info.value)


def test_alias_bomb_is_bounded():
  lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
  for i in range(1, 8):
    lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 10) + "]")
  with pytest.raises(dsl.SpecError) as info:
    loader.parse_yaml("\n".join(lines) + "\n", "f")
  assert "more than" in str(info.value)


def test_yaml12_exponent_floats():
  data, _ = loader.parse_yaml("a: 1e-6\nb: '1e-6'\n", "f")
  assert data == {"a": 1e-6, "b": "1e-6"}


@pytest.mark.parametrize(
    "expr, value",
    [("a", 6), ("a * 4", 24), ("(a + 2) // 3", 2), ("-a + 10", 4), ("a - 2 * 2", 2), ("7", 7)],
)
def test_integer_arithmetic(expr, value):
  assert refs.evaluate(expr, {"a": 6}.__getitem__) == value


@pytest.mark.parametrize("expr", ["a / 2", "a ** 2", "__import__('os')", "a +", "(a", "a // 0", "a.b"])
def test_everything_else_is_rejected(expr):
  with pytest.raises(refs.RefError):
    refs.evaluate(expr, {"a": 6}.__getitem__)


def test_bare_reference_may_be_any_type():
  data, loc = loader.parse_yaml("params: {act: gelu, sizes: [1, 2]}\nx: ${act}\ny: ${sizes}\n", "f")
  out, issues = refs.resolve_document(data, loc)
  assert not issues
  assert out["x"] == "gelu" and out["y"] == [1, 2]


def test_params_may_reference_params():
  data, loc = loader.parse_yaml("params: {a: 3, b: ${a * 2}, c: ${b + a}}\nx: ${c}\n", "f")
  out, issues = refs.resolve_document(data, loc)
  assert not issues and out["x"] == 9 and out["params"] == {"a": 3, "b": 6, "c": 9}
