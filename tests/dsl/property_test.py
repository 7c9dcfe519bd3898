"""Properties over random valid specs: static shapes == eval_shape, determinism, round trips."""

import jax
import numpy as np
from hypothesis import given, settings

from penzai import dsl, pz
from dsl_strategies import model_specs


@given(model_specs())
def test_static_output_matches_eval_shape(spec):
  # deep=True builds and runs the model under jax.eval_shape with prime sizes
  # for symbols and raises if the real output differs from the static one.
  report = dsl.check(spec, deep=True)
  assert report.output.named_shape["batch"] == spec.input.named_shape["batch"]


@settings(max_examples=5)
@given(model_specs())
def test_building_twice_with_same_key_gives_identical_parameters(spec):
  def values(model):
    return {p.label: np.asarray(p.value.data_array)
            for p in pz.select(model).at_instances_of(pz.Parameter).get_sequence()}

  a = values(dsl.build(spec, init_base_rng=jax.random.key(7)))
  b = values(dsl.build(spec, init_base_rng=jax.random.key(7)))
  assert a.keys() == b.keys() == set(dsl.check(spec).labels)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


@given(model_specs())
def test_spec_yaml_spec_is_identity(spec):
  assert dsl.loads(dsl.dumps(spec), "roundtrip.yaml") == spec


@given(model_specs())
def test_parameter_count_matches_built_unbound_model(spec):
  report = dsl.check(spec)
  slots = pz.select(dsl.build(spec)).at_instances_of(pz.ParameterSlot).get_sequence()
  assert {s.label for s in slots} == set(report.labels)
