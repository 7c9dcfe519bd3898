"""Tests for penzai.nn.dropout (through pz.nn)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz


def test_dropout_statistics_and_scaling():
  stream = pz.RandomStream.from_base_key(jax.random.key(0))
  x = pz.nx.ones({"batch": 40, "feat": 100})
  layer = pz.nn.StochasticDropout(drop_rate=0.25)
  result = layer(x, random_stream=stream, other=1).unwrap("batch", "feat")
  dropped = np.asarray(result) == 0
  assert abs(dropped.mean() - 0.25) < 0.03
  np.testing.assert_allclose(np.asarray(result)[~dropped], 1 / 0.75, rtol=1e-6)
  # Exactly one key consumed.
  assert int(stream.offset.value) == 1
  again = layer(x, random_stream=stream).unwrap("batch", "feat")
  assert not np.array_equal(np.asarray(again) == 0, dropped)


def test_dropout_shares_mask_across_axes():
  stream = pz.RandomStream.from_base_key(jax.random.key(1))
  x = pz.nx.ones({"batch": 8, "seq": 6, "feat": 10})
  layer = pz.nn.StochasticDropout(0.5, share_across_axes=("seq",))
  result = np.asarray(
      layer(x, random_stream=stream).unwrap("batch", "seq", "feat")
  )
  for s in range(1, 6):
    np.testing.assert_array_equal(result[:, s, :], result[:, 0, :])
  assert 0 < (result == 0).mean() < 1


def test_dropout_custom_stream_name_and_missing_stream():
  layer = pz.nn.StochasticDropout(0.1, random_stream_input_name="rng")
  x = pz.nx.ones({"a": 4})
  with pytest.raises(KeyError, match="rng"):
    layer(x, random_stream=pz.RandomStream.from_base_key(jax.random.key(0)))
  out = layer(x, rng=pz.RandomStream.from_base_key(jax.random.key(0)))
  assert out.named_shape == {"a": 4}


def test_dropout_matches_manual_bernoulli():
  key = jax.random.key(7)
  x_data = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
  x = pz.nx.wrap(x_data, "a", "b")
  out = pz.nn.StochasticDropout(0.3)(
      x, random_stream=pz.RandomStream.from_base_key(key)
  )
  drop = jax.random.bernoulli(jax.random.fold_in(key, 0), p=0.3, shape=(3, 4))
  expected = jnp.where(drop, 0, x_data / 0.7)
  np.testing.assert_allclose(out.unwrap("a", "b"), expected, rtol=1e-6)


def test_disable_enable_and_maybe_dropout():
  stochastic = pz.nn.StochasticDropout(
      0.2, share_across_axes=("s",), random_stream_input_name="rng"
  )
  disabled = stochastic.disable()
  assert isinstance(disabled, pz.nn.DisabledDropout)
  assert isinstance(disabled, pz.nn.Identity)
  assert disabled.drop_rate == 0.2
  assert disabled.share_across_axes == ("s",)
  # Unlike upstream, the stream name survives a disable/enable round trip.
  assert disabled.random_stream_input_name == "rng"
  x = pz.nx.ones({"s": 3})
  assert disabled(x) is x
  assert disabled.enable() == stochastic

  assert pz.nn.maybe_dropout(None) == pz.nn.DisabledDropout(
      drop_rate=0.0, share_across_axes=()
  )
  assert pz.nn.maybe_dropout(0.1, ("a",), "r") == pz.nn.StochasticDropout(
      0.1, ("a",), "r"
  )


def test_dropout_field_layout():
  layer = pz.nn.StochasticDropout(0.5)
  assert jax.tree_util.tree_leaves(layer) == [0.5]
  assert (layer.share_across_axes, layer.random_stream_input_name) == (
      (),
      "random_stream",
  )
  with pytest.raises(TypeError):
    pz.nn.DisabledDropout(drop_rate=0.1)  # share_across_axes has no default
