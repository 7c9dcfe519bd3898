"""Tests for penzai.nn.basic_ops (through pz.nn)."""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from treescope import formatting_util

from penzai import pz


def _named(shape, *names, seed=0):
  data = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
  return data, pz.nx.wrap(data, *names)


def test_elementwise_named_and_plain():
  data, x = _named((2, 3), "a", "b")
  layer = pz.nn.Elementwise(jax.nn.relu)
  np.testing.assert_allclose(
      layer(x, ignored=1).unwrap("a", "b"), np.maximum(data, 0)
  )
  np.testing.assert_allclose(layer(data), np.maximum(data, 0))
  assert layer.treescope_color() == formatting_util.color_from_string(
      repr(jax.nn.relu)
  )
  assert jax.tree_util.tree_leaves(layer) == []  # fn is static


@pytest.mark.parametrize("axes", ["b", ("a", "c")])
def test_softmax_matches_jax(axes):
  data, x = _named((2, 3, 4), "a", "b", "c")
  result = pz.nn.Softmax(axes)(x, side=None)
  axes_tuple = (axes,) if isinstance(axes, str) else axes
  positions = tuple("abc".index(a) for a in axes_tuple)
  shifted = np.exp(data - data.max(axis=positions, keepdims=True))
  expected = shifted / shifted.sum(axis=positions, keepdims=True)
  np.testing.assert_allclose(
      result.unwrap("a", "b", "c"), expected, rtol=1e-6
  )
  # Other axes first, then the softmax axes.
  others = [n for n in "abc" if n not in axes_tuple]
  assert list(result.named_shape) == [*others, *axes_tuple]


def test_softmax_missing_axis_names_layer_and_axis():
  _, x = _named((2, 3), "a", "b")
  with pytest.raises(ValueError, match="Softmax.*'kv_seq'"):
    pz.nn.Softmax("kv_seq")(x)


def test_cast_to_dtype():
  _, x = _named((2,), "a")
  tree = {"named": x, "plain": jnp.ones(3)}
  result = pz.nn.CastToDType(jnp.bfloat16)(tree)
  assert result["named"].dtype == jnp.bfloat16
  assert result["plain"].dtype == jnp.bfloat16
  assert jax.tree_util.tree_leaves(pz.nn.CastToDType(jnp.int32)) == []


def test_tanh_soft_cap():
  data, _ = _named((5,), "a")
  layer = pz.nn.TanhSoftCap(soft_cap=2.0)
  np.testing.assert_allclose(
      layer(pz.nx.wrap(data * 10, "a")).unwrap("a"),
      np.tanh(data * 10 / 2.0) * 2.0,
      rtol=1e-6,
  )
  plain = layer(jnp.array([0.5, 100.0]))
  assert isinstance(plain, pz.nx.NamedArrayBase)
  np.testing.assert_allclose(
      plain.unwrap(), np.tanh(np.array([0.25, 50.0])) * 2.0, rtol=1e-6
  )
  # soft_cap is a pytree child.
  assert jax.tree_util.tree_leaves(layer) == [2.0]


@hypothesis.given(
    st.lists(st.floats(-20, 20, allow_nan=False), min_size=12, max_size=12),
    st.floats(-50, 50, allow_nan=False),
)
def test_softmax_sums_to_one_and_is_shift_invariant(values, shift):
  data = np.asarray(values, np.float32).reshape(3, 4)
  layer = pz.nn.Softmax("b")
  probs = np.asarray(layer(pz.nx.wrap(data, "a", "b")).unwrap("a", "b"))
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
  shifted = layer(pz.nx.wrap(data + np.float32(shift), "a", "b"))
  np.testing.assert_allclose(
      shifted.unwrap("a", "b"), probs, rtol=1e-3, atol=1e-5
  )
