"""Tests for penzai.nn.parameters (through pz.nn)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz


def test_derive_param_key_is_fold_in_of_sha1_prefix():
  base = jax.random.key(3)
  key = pz.nn.derive_param_key(base, "foo")
  expected = jax.random.fold_in(base, 200198069)
  np.testing.assert_array_equal(
      jax.random.key_data(key), jax.random.key_data(expected)
  )


def test_derive_param_key_differs_by_name_and_is_deterministic():
  base = jax.random.key(0)
  a1 = jax.random.key_data(pz.nn.derive_param_key(base, "a.weights"))
  a2 = jax.random.key_data(pz.nn.derive_param_key(base, "a.weights"))
  b = jax.random.key_data(pz.nn.derive_param_key(base, "b.weights"))
  np.testing.assert_array_equal(a1, a2)
  assert not np.array_equal(a1, b)


def test_make_parameter_without_key_gives_slot():
  calls = []
  slot = pz.nn.make_parameter(
      "layer.weights", None, lambda key: calls.append(key), metadata={"x": 1}
  )
  assert slot == pz.ParameterSlot("layer.weights")
  assert not calls  # The initializer is never called.


def test_make_parameter_calls_initializer_with_derived_key_and_args():
  base = jax.random.key(1)
  seen = {}

  def init(key, size, *, scale):
    seen["key"] = key
    return scale * jnp.ones((size,))

  param = pz.nn.make_parameter(
      name="p", init_base_rng=base, initializer=init, size=3, scale=2.0
  )
  assert isinstance(param, pz.Parameter)
  assert param.label == "p"
  assert param.metadata == {}
  np.testing.assert_array_equal(param.value, [2.0, 2.0, 2.0])
  np.testing.assert_array_equal(
      jax.random.key_data(seen["key"]),
      jax.random.key_data(pz.nn.derive_param_key(base, "p")),
  )

  positional = pz.nn.make_parameter(
      "q", base, lambda key, n: jnp.zeros((n,)), 4, metadata={"tag": 1}
  )
  assert positional.value.shape == (4,)
  assert positional.metadata == {"tag": 1}


def test_assert_no_parameter_slots():
  ok_model = [pz.StateVariableSlot("s"), {"a": jnp.ones(2)}]
  assert pz.nn.assert_no_parameter_slots(ok_model) is None
  bad_model = {"x": [pz.ParameterSlot("w"), 3]}
  with pytest.raises(
      ValueError, match="^Unexpected ParameterSlots found in model:.*'w'"
  ):
    pz.nn.assert_no_parameter_slots(bad_model)


def test_assert_no_parameter_slots_on_layer_built_without_key():
  layer = pz.nn.Linear.from_config(
      name="lin", init_base_rng=None, input_axes={"i": 2}, output_axes={"o": 3}
  )
  with pytest.raises(ValueError, match="lin.weights"):
    pz.nn.assert_no_parameter_slots(layer)
  built = pz.nn.Linear.from_config(
      name="lin",
      init_base_rng=jax.random.key(0),
      input_axes={"i": 2},
      output_axes={"o": 3},
  )
  pz.nn.assert_no_parameter_slots(built)
