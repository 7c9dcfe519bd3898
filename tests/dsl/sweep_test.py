"""Sweeps: grid x zip expansion, validation of every variant before building."""

import pytest

from penzai import dsl
from penzai.dsl import sweeps

BASE = """\
name: m
params: {hidden: 4}
input: {named_shape: {batch: B, features: 3}}
model:
  type: Sequential
  layers:
    - {type: Linear, input_axes: {features: 3}, output_axes: {hidden: "${hidden}"}}
    - {type: Linear, input_axes: {hidden: "${hidden}"}, output_axes: {out: 2}}
"""


def test_grid_times_zip():
  combos = sweeps.combinations({"a": [1, 2], "b": [3, 4]}, {"c": [5, 6], "d": [7, 8]})
  assert len(combos) == 8
  assert combos[0] == {"a": 1, "b": 3, "c": 5, "d": 7}
  assert combos[1] == {"a": 1, "b": 3, "c": 6, "d": 8}


def test_sweep_over_python_spec_counts_params_without_building():
  spec = dsl.loads(BASE, "base.yaml")
  variants = dsl.sweep(spec, grid={"params.hidden": [2, 8]})
  assert [v.params for v in variants] == [3 * 2 + 2 * 2, 3 * 8 + 8 * 2]


def test_invalid_variant_reported_with_overrides_and_nothing_returned(tmp_path):
  base = tmp_path / "base.yaml"
  base.write_text(BASE)
  with pytest.raises(dsl.SpecError) as info:
    dsl.sweep(str(base), grid={"params.hidden": [2, 0, "x"]})
  messages = [e.message for e in info.value.errors]
  assert len(messages) == 4  # two errors for each of the two bad variants
  assert all(m.startswith("variant [params.hidden=0]") or m.startswith("variant [params.hidden='x']") for m in messages)
  assert info.value.errors[0].line == 7


def test_zip_lengths_must_agree():
  spec = dsl.loads(BASE, "base.yaml")
  with pytest.raises(dsl.SpecError, match="same length"):
    dsl.sweep(spec, zip={"params.hidden": [1, 2], "name": ["a"]})


def test_sweep_file_unknown_key(tmp_path):
  (tmp_path / "base.yaml").write_text(BASE)
  f = tmp_path / "s.yaml"
  f.write_text("base: base.yaml\ngird:\n  params.hidden: [1]\n")
  with pytest.raises(dsl.SpecError) as info:
    sweeps.load_sweep(f)
  e = info.value.errors[0]
  assert (e.line, e.column) == (2, 1) and "did you mean 'grid'?" in e.message


def test_bad_override_path():
  spec = dsl.loads(BASE, "base.yaml")
  with pytest.raises(dsl.SpecError, match="index 9 is out of range"):
    dsl.sweep(spec, grid={"model.layers.9.fn": ["relu"]})


def test_misspelled_param_is_rejected_with_suggestion(tmp_path):
  (tmp_path / "base.yaml").write_text(BASE)
  f = tmp_path / "s.yaml"
  f.write_text("base: base.yaml\ngrid:\n  params.hiden: [1, 2]\n")
  with pytest.raises(dsl.SpecError) as info:
    sweeps.load_sweep(f)
  e = info.value.errors[0]
  assert (e.file, e.line, e.column) == (str(f), 3, 3)
  assert "did you mean 'hidden'?" in e.message
