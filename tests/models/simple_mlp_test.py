"""Tests for penzai.models.simple_mlp."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.models import simple_mlp


# Built once and shared: initialization dominates the cost of these tests.
_SMALL_MLP = simple_mlp.MLP.from_config(
    name="mlp", init_base_rng=jax.random.key(0), feature_sizes=[2, 8, 3]
)


def test_mlp_structure_and_labels():
  mlp = _SMALL_MLP
  assert type(mlp) is simple_mlp.MLP
  assert isinstance(mlp, pz.nn.Sequential)
  affine_0, act, affine_1 = mlp.sublayers
  assert isinstance(affine_0, pz.nn.Affine) and isinstance(affine_1, pz.nn.Affine)
  assert act == pz.nn.Elementwise(jax.nn.relu)
  linear, rename, bias = affine_0.sublayers
  assert isinstance(linear, pz.nn.Linear)
  assert linear.weights.label == "mlp/Affine_0/Linear.weights"
  assert dict(linear.weights.value.named_shape) == {"features": 2, "features_out": 8}
  assert linear.in_axis_names == ("features",)
  assert linear.out_axis_names == ("features_out",)
  assert rename == pz.nn.RenameAxes(old=("features_out",), new=("features",))
  assert bias.bias.label == "mlp/Affine_0/AddBias.bias"
  assert dict(bias.bias.value.named_shape) == {"features": 8}
  labels = [p.label for p in pz.unbind_params(mlp)[1]]
  assert labels == [
      "mlp/Affine_0/Linear.weights", "mlp/Affine_0/AddBias.bias",
      "mlp/Affine_1/Linear.weights", "mlp/Affine_1/AddBias.bias",
  ]


def test_mlp_forward_matches_hand_written_jax():
  mlp = simple_mlp.MLP.from_config(
      name="m", init_base_rng=jax.random.key(1), feature_sizes=[2, 8, 8, 3],
      activation_fn=jax.nn.gelu, feature_axis="f",
  )
  assert len(mlp.sublayers) == 5
  x = jax.random.normal(jax.random.key(2), (4, 2))
  out = mlp(pz.nx.wrap(x, "batch", "f"))
  assert dict(out.named_shape) == {"batch": 4, "f": 3}
  affines = [layer for layer in mlp.sublayers if isinstance(layer, pz.nn.Affine)]
  h = x
  for i, affine in enumerate(affines):
    if i:
      h = jax.nn.gelu(h)
    h = h @ affine.sublayers[0].weights.value.unwrap("f", "f_out") + affine.sublayers[2].bias.value.unwrap("f")
  np.testing.assert_allclose(out.unwrap("batch", "f"), h, rtol=1e-5, atol=1e-6)


def test_mlp_needs_two_sizes_and_slots_without_key():
  with pytest.raises(AssertionError):
    simple_mlp.MLP.from_config(init_base_rng=None, feature_sizes=[4])
  unbound = simple_mlp.MLP.from_config(init_base_rng=None, feature_sizes=[2, 8, 3])
  slots = pz.select(unbound).at_instances_of(pz.ParameterSlot).get_sequence()
  assert slots == (
      pz.ParameterSlot("mlp/Affine_0/Linear.weights"),
      pz.ParameterSlot("mlp/Affine_0/AddBias.bias"),
      pz.ParameterSlot("mlp/Affine_1/Linear.weights"),
      pz.ParameterSlot("mlp/Affine_1/AddBias.bias"),
  )
  with pytest.raises(pz.UnboundVariableError):
    unbound(pz.nx.ones({"features": 2}))
  bound = unbound.bind_variables(pz.unbind_params(_SMALL_MLP)[1])
  x = pz.nx.ones({"features": 2})
  np.testing.assert_array_equal(bound(x).unwrap("features"), _SMALL_MLP(x).unwrap("features"))


def test_mlp_rejects_wrong_axes():
  mlp = _SMALL_MLP
  with pytest.raises(pz.chk.StructureMismatchError):
    mlp(pz.nx.ones({"batch": 2, "feature": 2}))
  with pytest.raises(pz.chk.StructureMismatchError):
    mlp(pz.nx.ones({"batch": 2, "features": 5}))


@hypothesis.settings(max_examples=10)
@hypothesis.given(batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_mlp_is_vectorized_over_batch(batch, seed):
  mlp = _SMALL_MLP
  x = pz.nx.wrap(jax.random.normal(jax.random.key(seed), (batch, 2)), "batch", "features")
  batched = mlp(x).unwrap("batch", "features")
  single = mlp(x[{"batch": 0}]).unwrap("features")
  np.testing.assert_allclose(batched[0], single, rtol=1e-5, atol=1e-6)



def test_dropout_mlp_structure_and_stochasticity():
  mlp = simple_mlp.DropoutMLP.from_config(
      init_base_rng=jax.random.key(0), feature_sizes=[2, 8, 8, 3], drop_rate=0.5
  )
  kinds = [type(layer) for layer in mlp.sublayers]
  assert kinds == [
      pz.nn.Affine, pz.nn.StochasticDropout, pz.nn.Elementwise, pz.nn.Affine,
      pz.nn.StochasticDropout, pz.nn.Elementwise, pz.nn.Affine,
  ]
  assert mlp.sublayers[1].drop_rate == 0.5
  assert mlp.sublayers[0].sublayers[0].weights.label == "dropout_mlp/Affine_0/Linear.weights"
  x = pz.nx.ones({"batch": 4, "features": 2})
  stream = pz.RandomStream.from_base_key(jax.random.key(1))
  a = mlp(x, random_stream=stream).unwrap("batch", "features")
  b = mlp(x, random_stream=stream).unwrap("batch", "features")
  assert int(stream.offset.value) == 4
  assert not np.allclose(a, b)
  with pytest.raises(KeyError):
    mlp(x)
