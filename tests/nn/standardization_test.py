"""Tests for penzai.nn.standardization (through pz.nn)."""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz


def _data(seed=0):
  rng = np.random.default_rng(seed)
  data = (rng.normal(size=(3, 4, 5)) * 3 + 1).astype(np.float32)
  return data, pz.nx.wrap(data, "batch", "seq", "emb")


def test_standardize_matches_formula():
  data, x = _data()
  result = pz.nn.Standardize(across="emb", epsilon=1e-6)(x, unused=1)
  mean = data.mean(-1, keepdims=True)
  var = (data**2).mean(-1, keepdims=True) - mean**2
  expected = (data - mean) / np.sqrt(var + 1e-6)
  np.testing.assert_allclose(
      result.unwrap("batch", "seq", "emb"), expected, rtol=1e-4, atol=1e-5
  )


def test_standardize_jointly_over_two_axes():
  data, x = _data()
  result = pz.nn.Standardize(across=("seq", "emb"))(x)
  flat = np.asarray(data).reshape(3, 20)
  expected = (flat - flat.mean(-1, keepdims=True)) / np.sqrt(
      flat.var(-1, keepdims=True) + 1e-6
  )
  np.testing.assert_allclose(
      result.unwrap("batch", "seq", "emb").reshape(3, 20),
      expected,
      rtol=1e-4,
      atol=1e-5,
  )


def test_standardize_plain_array_fails_and_missing_axis_named():
  with pytest.raises(AttributeError):
    pz.nn.Standardize(across="emb")(jnp.ones(3))
  _, x = _data()
  with pytest.raises(ValueError, match="Standardize.*'features'"):
    pz.nn.Standardize(across="features")(x)


def test_rms_standardize_matches_formula():
  data, x = _data()
  result = pz.nn.RMSStandardize(across="emb", epsilon=1e-5)(x)
  expected = data / np.sqrt((data**2).mean(-1, keepdims=True) + 1e-5)
  np.testing.assert_allclose(
      result.unwrap("batch", "seq", "emb"), expected, rtol=1e-5
  )
  with pytest.raises(ValueError, match="RMSStandardize.*'nope'"):
    pz.nn.RMSStandardize(across="nope")(x)


def test_layer_norm_structure_and_formula():
  key = jax.random.key(0)
  norm = pz.nn.LayerNorm.from_config(
      name="ln", init_base_rng=key, across_axes={"emb": 5}
  )
  standardize, scale, shift = norm.sublayers
  assert isinstance(norm, pz.nn.Sequential)
  assert standardize == pz.nn.Standardize(across=("emb",), epsilon=1e-6)
  assert isinstance(standardize.epsilon, float)
  assert isinstance(scale, pz.nn.Linear)
  assert scale.weights.label == "ln/scale.weights"
  assert (scale.in_axis_names, scale.out_axis_names) == ((), ())
  assert shift.bias.label == "ln/shift.bias"
  np.testing.assert_array_equal(scale.weights.value.unwrap("emb"), np.ones(5))
  np.testing.assert_array_equal(shift.bias.value.unwrap("emb"), np.zeros(5))

  # Non-trivial scale and shift.
  gamma = np.arange(5.0, dtype=np.float32) + 1
  beta = -np.arange(5.0, dtype=np.float32)
  scale.weights.value = pz.nx.wrap(gamma, "emb")
  shift.bias.value = pz.nx.wrap(beta, "emb")
  data, x = _data()
  result = norm(x).unwrap("batch", "seq", "emb")
  mean = data.mean(-1, keepdims=True)
  var = data.var(-1, keepdims=True)
  expected = (data - mean) / np.sqrt(var + 1e-6) * gamma + beta
  np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


def test_rms_layer_norm_structure_and_formula():
  norm = pz.nn.RMSLayerNorm.from_config(
      name="rms",
      init_base_rng=jax.random.key(0),
      across_axes={"emb": 5},
      epsilon=1e-6,
      dtype=jnp.bfloat16,
  )
  standardize, scale = norm.sublayers
  assert isinstance(standardize.epsilon, jax.Array)
  assert standardize.epsilon.dtype == jnp.bfloat16
  assert standardize.epsilon.shape == ()
  np.testing.assert_allclose(
      float(standardize.epsilon), 9.98378e-07, rtol=1e-5
  )
  assert scale.weights.label == "rms/scale.weights"
  assert scale.weights.value.dtype == jnp.bfloat16

  f32 = pz.nn.RMSLayerNorm.from_config(
      name="rms", init_base_rng=jax.random.key(0), across_axes={"emb": 5}
  )
  gamma = np.linspace(0.5, 2.0, 5, dtype=np.float32)
  f32.sublayers[1].weights.value = pz.nx.wrap(gamma, "emb")
  data, x = _data()
  expected = data / np.sqrt((data**2).mean(-1, keepdims=True) + 1e-6) * gamma
  np.testing.assert_allclose(
      f32(x).unwrap("batch", "seq", "emb"), expected, rtol=1e-5
  )


def test_rms_norm_keeps_activation_dtype():
  norm = pz.nn.RMSLayerNorm.from_config(
      name="rms",
      init_base_rng=jax.random.key(0),
      across_axes={"emb": 5},
      dtype=jnp.bfloat16,
  )
  _, x = _data()
  assert norm(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_norms_without_key_have_slots():
  norm = pz.nn.LayerNorm.from_config(
      name="ln", init_base_rng=None, across_axes={"emb": 5}
  )
  slots = pz.select(norm).at_instances_of(pz.ParameterSlot).get_sequence()
  assert set(slots) == {
      pz.ParameterSlot("ln/scale.weights"),
      pz.ParameterSlot("ln/shift.bias"),
  }


@hypothesis.given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=10, max_size=10),
    st.floats(-5, 5, allow_nan=False),
    st.floats(0.5, 4, allow_nan=False),
)
def test_standardize_is_affine_invariant(values, shift, scale):
  data = np.asarray(values, np.float32).reshape(2, 5)
  hypothesis.assume(np.all(data.std(axis=1) > 0.5))
  layer = pz.nn.Standardize(across="emb", epsilon=1e-6)
  base = layer(pz.nx.wrap(data, "b", "emb")).unwrap("b", "emb")
  moved = layer(
      pz.nx.wrap(data * np.float32(scale) + np.float32(shift), "b", "emb")
  ).unwrap("b", "emb")
  np.testing.assert_allclose(moved, base, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(np.asarray(base).mean(axis=1), 0.0, atol=1e-4)
