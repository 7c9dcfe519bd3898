"""The static named-axis checker and the eval_shape deep check."""

import pytest

from penzai import dsl
from penzai.dsl import checker


def _spec(model, named_shape=None, side_inputs=None, dtype="float32"):
  return dsl.ModelSpec(
      name="m",
      input=dsl.TensorSpec(named_shape=named_shape or {"batch": "B", "features": 8}, dtype=dtype),
      side_inputs=side_inputs or {},
      model=model,
  )


def test_symbols_unify_and_propagate():
  spec = _spec(
      dsl.Sequential(layers=[
          dsl.Linear(input_axes={"features": 8}, output_axes={"hidden": 4}),
          dsl.Elementwise(fn="relu"),
          dsl.Linear(input_axes={"hidden": 4}, output_axes={"out": 2}),
      ])
  )
  report = dsl.check(spec)
  assert report.output == dsl.TensorShape({"batch": "B", "out": 2}, "float32")
  assert report.total_params == 8 * 4 + 4 * 2
  assert [n.path for n in report.nodes][:2] == ["model", "model.layers[0]"]
  assert report.bindings == {"B": "B"}


def test_symbol_bound_by_side_input():
  spec = _spec(
      dsl.ApplyRoPE(embedding_axis="features", max_wavelength=100.0, positions_input_name="pos"),
      named_shape={"batch": "B", "seq": "S", "features": 8},
      side_inputs={"pos": dsl.TensorSpec(named_shape={"batch": 3, "seq": "S"}, dtype="int32")},
  )
  report = dsl.check(spec)
  assert report.bindings == {"B": 3, "S": "S"}
  assert dict(report.output.named_shape) == {"batch": 3, "seq": "S", "features": 8}


def test_missing_side_input_is_reported():
  spec = _spec(dsl.ApplyCausalAttentionMask())
  with pytest.raises(dsl.SpecError) as info:
    dsl.check(spec)
  assert info.value.errors[0].kind == "side_input_missing"
  assert "'token_positions'" in info.value.errors[0].message


def test_stacked_repeat_must_preserve_shape():
  spec = _spec(dsl.Repeat(count=2, stack=True, layer=dsl.Linear(input_axes={"features": 8}, output_axes={"h": 8})))
  with pytest.raises(dsl.SpecError) as info:
    dsl.check(spec)
  assert "stacked Repeat" in str(info.value)


def test_stacked_repeat_counts_stacked_parameters():
  layer = dsl.Linear(input_axes={"features": 8}, output_axes={"features": 8})
  report = dsl.check(_spec(dsl.Repeat(count=3, stack=True, layer=layer)))
  assert report.total_params == 3 * 64
  assert report.labels == {"m/Linear.weights": {"blocks": 3, "features": 8, "features_out": 8}}


def test_errors_in_independent_places_are_all_reported():
  spec = _spec(dsl.BranchAndAddTogether(branches=[
      dsl.Linear(input_axes={"nope": 8}, output_axes={"out": 2}),
      dsl.LayerNorm(across_axes={"features": 9}),
  ]))
  with pytest.raises(dsl.SpecError) as info:
    dsl.check(spec)
  assert [e.kind for e in info.value.errors] == ["axis_missing", "size_mismatch"]
  assert [e.path for e in info.value.errors] == [
      ("model", "branches", 0, "input_axes"), ("model", "branches", 1, "across_axes")]


def test_python_specs_report_without_positions():
  spec = _spec(dsl.Softmax(axes="nope"))
  with pytest.raises(dsl.SpecError) as info:
    dsl.check(spec)
  assert str(info.value).startswith("<spec>: model.axes: Softmax over axis 'nope'")


def test_deep_check_uses_distinct_primes():
  spec = _spec(dsl.Identity(), named_shape={"a": "A", "b": "B", "c": 11})
  report = dsl.check(spec)
  sizes = checker.symbol_sizes(spec, report)
  assert len(set(sizes.values())) == 2 and 11 not in sizes.values()
  assert all(all(v % d for d in range(2, v)) for v in sizes.values())


def test_deep_check_passes_on_consistent_model():
  spec = _spec(dsl.Sequential(layers=[
      dsl.Affine(input_axes={"features": 8}, output_axes={"features": 3}),
      dsl.Softmax(axes="features"),
  ]))
  dsl.check(spec, deep=True)


def test_deep_check_catches_runtime_failure():
  # Odd RoPE size cannot be seen statically when the size is a symbol.
  spec = _spec(
      dsl.ApplyRoPE(embedding_axis="features", max_wavelength=100.0, positions_input_name="pos"),
      named_shape={"seq": "S", "features": "F"},
      side_inputs={"pos": dsl.TensorSpec(named_shape={"seq": "S"}, dtype="int32")},
  )
  dsl.check(spec)
  with pytest.raises(dsl.SpecError) as info:
    dsl.check(spec, deep=True)
  assert info.value.errors[0].kind == "deep_check"


def test_deep_check_of_stacked_rms_norm():
  # RMSLayerNorm's epsilon is a jnp constant built inside the LayerStack builder under eval_shape.
  layer = dsl.RMSLayerNorm(across_axes={"features": 8})
  dsl.check(_spec(dsl.Repeat(count=2, stack=True, layer=layer)), deep=True)
