"""Tests for penzai.toolshed.model_rewiring."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from penzai import pz
from penzai.toolshed import model_rewiring


@pz.pytree_dataclass
class _Constant(pz.nn.Layer):
  value: Any

  def __call__(self, x: Any, /, **side_inputs: Any) -> Any:
    return self.value


def _np(arr, *names):
  return np.asarray(arr.unwrap(*names))


def _attn_weights():
  logits = jax.random.normal(jax.random.key(0), (2, 3, 4))
  return pz.nx.wrap(jax.nn.softmax(logits, axis=-1), "heads", "seq", "kv_seq")


def test_knockout_keeps_masked_in_heads_and_redirects_others():
  weights = _attn_weights()
  mask = pz.nx.wrap(jnp.array([1.0, 0.0]), "heads")
  out = model_rewiring.KnockOutAttentionHeads(head_mask=mask)(weights)
  got = _np(out, "heads", "seq", "kv_seq")
  orig = _np(weights, "heads", "seq", "kv_seq")
  np.testing.assert_allclose(got[0], orig[0], rtol=1e-6)
  expected_bos = np.zeros((3, 4))
  expected_bos[:, 0] = 1
  np.testing.assert_allclose(got[1], expected_bos, atol=1e-7)


def test_knockout_fraction_interpolates_and_extra_mask_axes_broadcast():
  weights = _attn_weights()
  mask = pz.nx.wrap(jnp.array([[0.5, 1.0], [0.0, 0.25]]), "variant", "heads")
  out = model_rewiring.KnockOutAttentionHeads(head_mask=mask)(weights)
  assert dict(out.named_shape) == {
      "variant": 2, "heads": 2, "seq": 3, "kv_seq": 4
  }
  got = _np(out, "variant", "heads", "seq", "kv_seq")
  orig = _np(weights, "heads", "seq", "kv_seq")
  onehot = np.zeros(4)
  onehot[0] = 1
  np.testing.assert_allclose(
      got[0, 0], onehot + 0.5 * (orig[0] - onehot), rtol=1e-6
  )
  np.testing.assert_allclose(
      got[1, 1], onehot + 0.25 * (orig[1] - onehot), rtol=1e-6
  )
  # Rows still sum to one.
  np.testing.assert_allclose(got.sum(-1), np.ones((2, 2, 3)), rtol=1e-6)


def _worlds_input():
  data = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)  # worlds x features
  return pz.nx.wrap(data, "worlds", "features")


def test_rewire_path_matrix_and_call():
  layer = model_rewiring.RewireComputationPaths(
      worlds_axis="worlds",
      world_ordering=("clean", "corrupt"),
      taking={
          "clean": model_rewiring.From("clean"),
          "corrupt": (
              model_rewiring.From("clean", 0.25),
              model_rewiring.From("corrupt", 0.75),
          ),
      },
  )
  mat = layer.path_matrix()
  np.testing.assert_allclose(
      np.asarray(mat.unwrap()), [[1.0, 0.0], [0.25, 0.75]]
  )
  x = _worlds_input()
  out = layer(x)
  xs = _np(x, "worlds", "features")
  got = _np(out, "worlds", "features")
  np.testing.assert_allclose(got[0], xs[0])
  np.testing.assert_allclose(got[1], 0.25 * xs[0] + 0.75 * xs[1], rtol=1e-6)


def test_rewire_named_weight_and_empty_connection():
  weight = pz.nx.wrap(jnp.array([0.0, 1.0, 2.0]), "layer")
  layer = model_rewiring.RewireComputationPaths(
      worlds_axis="worlds",
      world_ordering=("a", "b"),
      taking={
          "a": (),
          "b": model_rewiring.From("a", weight),
      },
  )
  mat = layer.path_matrix()
  assert dict(mat.named_shape) == {"layer": 3}
  assert mat.positional_shape == (2, 2)
  out = layer(_worlds_input())
  assert dict(out.named_shape) == {"layer": 3, "features": 3, "worlds": 2}
  got = _np(out, "layer", "worlds", "features")
  xs = _np(_worlds_input(), "worlds", "features")
  np.testing.assert_allclose(got[:, 0], np.zeros((3, 3)))
  for i in range(3):
    np.testing.assert_allclose(got[i, 1], i * xs[0])


def test_rewire_inconsistent_worlds_raise():
  layer = model_rewiring.RewireComputationPaths(
      worlds_axis="worlds",
      world_ordering=("a", "b"),
      taking={"a": model_rewiring.From("a")},
  )
  with pytest.raises(AssertionError):
    layer.path_matrix()
  layer2 = model_rewiring.RewireComputationPaths(
      worlds_axis="worlds",
      world_ordering=("a", "b"),
      taking={"a": (), "c": ()},
  )
  with pytest.raises(AssertionError):
    layer2.path_matrix()


def test_linearize_square_matches_taylor_expansion():
  point = pz.nx.wrap(jnp.array([1.0, -2.0, 0.5]), "features")
  layer = model_rewiring.LinearizeAndAdjust(
      linearize_around=_Constant(point),
      evaluate_at=pz.nn.Identity(),
      target=pz.nn.Elementwise(jnp.square),
  )
  x = pz.nx.wrap(jnp.array([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]]),
                 "batch", "features")
  out = layer(x)
  # The result carries the union of the named axes.
  assert dict(out.named_shape) == {"batch": 2, "features": 3}
  p = _np(point, "features")
  e = _np(x, "batch", "features")
  np.testing.assert_allclose(
      _np(out, "batch", "features"), p**2 + 2 * p * (e - p), rtol=1e-6
  )


def test_linearize_is_exact_for_linear_targets_and_identity_for_same_point():
  linear = pz.nn.Linear.from_config(
      name="lin", init_base_rng=jax.random.key(2),
      input_axes={"features": 3}, output_axes={"out": 2},
  )
  x = pz.nx.wrap(jax.random.normal(jax.random.key(3), (2, 3)),
                 "batch", "features")
  point = pz.nx.wrap(jnp.array([5.0, -1.0, 2.0]), "features")
  linearized = model_rewiring.LinearizeAndAdjust(
      linearize_around=_Constant(point),
      evaluate_at=pz.nn.Identity(),
      target=linear,
  )
  np.testing.assert_allclose(
      _np(linearized(x), "batch", "out"),
      _np(linear(x), "batch", "out"),
      rtol=1e-5, atol=1e-6,
  )
  # Linearizing tanh around the input itself reproduces tanh exactly.
  same = model_rewiring.LinearizeAndAdjust(
      linearize_around=pz.nn.Identity(),
      evaluate_at=pz.nn.Identity(),
      target=pz.nn.Elementwise(jnp.tanh),
  )
  np.testing.assert_allclose(
      _np(same(x), "batch", "features"),
      np.tanh(_np(x, "batch", "features")),
      rtol=1e-6,
  )


def test_linearize_wraps_plain_arrays():
  layer = model_rewiring.LinearizeAndAdjust(
      linearize_around=_Constant(jnp.array(2.0)),
      evaluate_at=pz.nn.Identity(),
      target=pz.nn.Elementwise(jnp.square),
  )
  x = pz.nx.wrap(jnp.array([1.0, 3.0]), "features")
  out = layer(x)
  np.testing.assert_allclose(
      _np(out, "features"), 4 + 4 * (np.array([1.0, 3.0]) - 2), rtol=1e-6
  )


# Property tests: fixed shapes (no recompilation), random values.

_floats = st.floats(-3, 3, allow_nan=False, width=32)


@given(
    st.lists(_floats, min_size=6, max_size=6),
    st.lists(_floats, min_size=6, max_size=6),
    _floats,
    st.lists(_floats, min_size=4, max_size=4),
)
def test_rewiring_is_linear_in_its_input(xs, ys, scale, weights):
  layer = model_rewiring.RewireComputationPaths(
      worlds_axis="worlds",
      world_ordering=("a", "b"),
      taking={
          "a": (model_rewiring.From("a", weights[0]),
                model_rewiring.From("b", weights[1])),
          "b": (model_rewiring.From("a", weights[2]),
                model_rewiring.From("b", weights[3])),
      },
  )
  x = pz.nx.wrap(jnp.array(xs, jnp.float32).reshape(2, 3), "worlds", "f")
  y = pz.nx.wrap(jnp.array(ys, jnp.float32).reshape(2, 3), "worlds", "f")
  lhs = _np(layer(x * scale + y), "worlds", "f")
  rhs = scale * _np(layer(x), "worlds", "f") + _np(layer(y), "worlds", "f")
  np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)
  # Hand computation: out[dest] = sum_src w[dest, src] * x[src].
  w = np.array(weights, np.float32).reshape(2, 2)
  np.testing.assert_allclose(
      _np(layer(x), "worlds", "f"), w @ np.array(xs, np.float32).reshape(2, 3),
      rtol=1e-4, atol=1e-4,
  )


@given(st.lists(_floats, min_size=3, max_size=3),
       st.lists(_floats, min_size=3, max_size=3))
def test_linearizing_an_affine_map_is_exact_at_any_point(point, inputs):
  target = pz.nn.Elementwise(lambda v: 2.0 * v + 1.0)
  layer = model_rewiring.LinearizeAndAdjust(
      linearize_around=_Constant(pz.nx.wrap(jnp.array(point, jnp.float32), "f")),
      evaluate_at=pz.nn.Identity(),
      target=target,
  )
  x = pz.nx.wrap(jnp.array(inputs, jnp.float32), "f")
  np.testing.assert_allclose(
      _np(layer(x), "f"), 2.0 * np.array(inputs, np.float32) + 1.0,
      rtol=1e-5, atol=1e-5,
  )


@given(st.lists(st.floats(0, 1, width=32), min_size=2, max_size=2))
def test_knockout_preserves_normalization(mask_values):
  weights = _attn_weights()
  mask = pz.nx.wrap(jnp.array(mask_values, jnp.float32), "heads")
  out = model_rewiring.KnockOutAttentionHeads(head_mask=mask)(weights)
  got = _np(out, "heads", "seq", "kv_seq")
  np.testing.assert_allclose(got.sum(-1), np.ones((2, 3)), rtol=1e-5)
  assert np.all(got >= -1e-6)
