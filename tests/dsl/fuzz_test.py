"""Fuzzing: arbitrary YAML and mutations of valid specs raise nothing but SpecError."""

import copy

import yaml
from hypothesis import given, strategies as st

from penzai import dsl
from dsl_strategies import model_specs

_junk = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True),
    st.text(max_size=8), st.sampled_from(["${x}", "${a * }", "relu", "Linear", "B", "", "${hidden}"]),
    st.lists(st.integers(-2, 5), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(-2, 5), max_size=2),
)


def _load_and_check(text: str) -> None:
  try:
    spec = dsl.loads(text, "fuzz.yaml")
    dsl.check(spec)
  except dsl.SpecError as e:
    assert e.errors and all(isinstance(i, dsl.SpecIssue) for i in e.errors)
    for issue in e.errors:
      str(issue)


@given(st.text(max_size=200))
def test_arbitrary_text(text):
  _load_and_check(text)


@given(st.recursive(_junk, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["name", "model", "input", "type", "layers", "params", "named_shape", "fn", "id", "count", "layer"]),
        inner, max_size=4)), max_leaves=20))
def test_arbitrary_yaml_data(data):
  _load_and_check(yaml.safe_dump(data))


def _paths(data, prefix=()):
  yield prefix
  if isinstance(data, dict):
    for k, v in data.items():
      yield from _paths(v, prefix + (k,))
  elif isinstance(data, list):
    for i, v in enumerate(data):
      yield from _paths(v, prefix + (i,))


@given(model_specs(), st.data())
def test_mutations_of_valid_specs(spec, data):
  doc = dsl.to_data(spec)
  paths = [p for p in _paths(doc) if p]
  for _ in range(data.draw(st.integers(1, 3))):
    path = data.draw(st.sampled_from(paths))
    target = doc
    try:
      for key in path[:-1]:
        target = target[key]
      action = data.draw(st.sampled_from(["replace", "delete", "rename"]))
      if action == "replace":
        target[path[-1]] = data.draw(_junk)
      elif action == "delete" and isinstance(target, dict):
        del target[path[-1]]
      elif action == "rename" and isinstance(target, dict):
        target[str(path[-1]) + "x"] = target.pop(path[-1])
    except (KeyError, IndexError, TypeError):
      pass
  _load_and_check(yaml.safe_dump(copy.deepcopy(doc)))
