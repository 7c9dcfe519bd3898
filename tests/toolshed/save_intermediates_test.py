"""Tests for penzai.toolshed.save_intermediates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from penzai import pz
from penzai.models import simple_mlp
from penzai.toolshed import save_intermediates


def _mlp():
  return simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(0), feature_sizes=[3, 4, 2]
  )


def _x():
  return pz.nx.wrap(
      jnp.arange(6, dtype=jnp.float32).reshape(2, 3) - 2.5, "batch", "features"
  )


def _savers(model):
  return pz.select(model).at_instances_of(pz.StateVariable).get_sequence()


def test_save_intermediate_layer_stores_and_returns_value():
  layer = save_intermediates.SaveIntermediate()
  assert layer.saved.value is None
  x = _x()
  assert layer(x, unused_side_input=1) is x
  np.testing.assert_array_equal(
      layer.saved.value.unwrap("batch", "features"),
      x.unwrap("batch", "features"),
  )


def test_each_saver_gets_its_own_variable():
  a = save_intermediates.SaveIntermediate()
  b = save_intermediates.SaveIntermediate()
  assert a.saved is not b.saved
  assert a.saved.label != b.saved.label


def test_save_intermediate_shape_stores_array_spec():
  layer = save_intermediates.SaveIntermediateShape()
  x = _x()
  assert layer(x) is x
  spec = layer.saved.value
  assert isinstance(spec, pz.chk.ArraySpec)
  assert dict(spec.named_shape) == {"batch": 2, "features": 3}
  assert spec.dtype == jnp.float32


def test_mlp_gets_eight_savers_in_documented_layout():
  model = _mlp()
  patched = save_intermediates.saving_all_intermediates(model)
  saver = save_intermediates.SaveIntermediate
  assert type(patched) is simple_mlp.MLP
  kinds = [type(s) for s in patched.sublayers]
  assert kinds == [
      saver, pz.nn.Affine, saver, pz.nn.Elementwise, saver, pz.nn.Affine,
      saver,
  ]
  inner = [type(s) for s in patched.sublayers[1].sublayers]
  assert inner == [
      pz.nn.Linear, saver, pz.nn.RenameAxes, saver, pz.nn.AddBias
  ]
  savers = _savers(patched)
  assert len(savers) == 8
  assert [v.label for v in savers] == [
      pz.ScopedStateVarLabel(group="intermediates", index=i) for i in range(8)
  ]
  assert all(v.value is None for v in savers)


def test_saved_values_match_hand_computation_and_output_unchanged():
  model = _mlp()
  patched = save_intermediates.saving_all_intermediates(model)
  x = _x()
  out = patched(x)
  np.testing.assert_allclose(
      out.unwrap("batch", "features"), model(x).unwrap("batch", "features")
  )
  vals = [v.value for v in _savers(patched)]
  assert all(isinstance(v, pz.nx.NamedArray) for v in vals)
  w0 = model.sublayers[0].sublayers[0].weights.value.unwrap(
      "features", "features_out"
  )
  b0 = model.sublayers[0].sublayers[2].bias.value.unwrap("features")
  xs = x.unwrap("batch", "features")
  np.testing.assert_allclose(vals[0].unwrap("batch", "features"), xs)
  np.testing.assert_allclose(
      vals[1].unwrap("batch", "features_out"), xs @ w0, rtol=1e-6
  )
  np.testing.assert_allclose(
      vals[3].unwrap("batch", "features"), xs @ w0 + b0, rtol=1e-6
  )
  np.testing.assert_allclose(
      vals[4].unwrap("batch", "features"),
      np.maximum(xs @ w0 + b0, 0),
      rtol=1e-6,
  )
  np.testing.assert_allclose(
      vals[7].unwrap("batch", "features"), out.unwrap("batch", "features")
  )


def test_parameters_are_shared_with_the_original():
  model = _mlp()
  patched = save_intermediates.saving_all_intermediates(model)
  _, orig_params = pz.unbind_params(model)
  _, new_params = pz.unbind_params(patched)
  assert len(orig_params) == len(new_params)
  assert all(a is b for a, b in zip(orig_params, new_params))


def test_no_group_uses_automatic_labels():
  patched = save_intermediates.saving_all_intermediates(
      _mlp(), intermediates_group=None
  )
  assert all(
      isinstance(v.label, pz.AutoStateVarLabel) for v in _savers(patched)
  )


def test_shapes_only_saves_specs():
  patched = save_intermediates.saving_all_intermediates(
      _mlp(), shapes_only=True
  )
  assert all(
      isinstance(s, save_intermediates.SaveIntermediateShape)
      for s in pz.select(patched)
      .at_instances_of(save_intermediates.SaveIntermediateShape)
      .get_sequence()
  )
  patched(_x())
  specs = [v.value for v in _savers(patched)]
  assert len(specs) == 8
  assert all(isinstance(s, pz.chk.ArraySpec) for s in specs)
  assert dict(specs[1].named_shape) == {"batch": 2, "features_out": 4}


def test_identity_is_not_followed_by_a_saver():
  model = pz.nn.Sequential(
      [pz.nn.Identity(), pz.nn.Elementwise(jnp.tanh), pz.nn.Identity()]
  )
  patched = save_intermediates.saving_all_intermediates(model)
  saver = save_intermediates.SaveIntermediate
  assert [type(s) for s in patched.sublayers] == [
      saver, pz.nn.Identity, pz.nn.Elementwise, saver, pz.nn.Identity
  ]
  alone = save_intermediates.saving_all_intermediates(pz.nn.Identity())
  assert type(alone) is pz.nn.Sequential
  assert [type(s) for s in alone.sublayers] == [saver, pz.nn.Identity]


def test_leaf_root_and_nested_children_are_wrapped():
  linear = pz.nn.Linear.from_config(
      name="lin", init_base_rng=jax.random.key(1),
      input_axes={"features": 3}, output_axes={"out": 2},
  )
  patched = save_intermediates.saving_all_intermediates(linear)
  assert type(patched) is pz.nn.Sequential
  assert isinstance(patched.sublayers[1], pz.nn.Linear)
  assert patched.sublayers[1].weights is linear.weights
  residual = pz.nn.Residual(pz.nn.Elementwise(jnp.tanh))
  patched_res = save_intermediates.saving_all_intermediates(residual)
  outer = patched_res.sublayers
  assert isinstance(outer[1], pz.nn.Residual)
  # The residual's delta is itself surrounded by savers.
  assert [type(s) for s in outer[1].delta.sublayers] == [
      save_intermediates.SaveIntermediate,
      pz.nn.Elementwise,
      save_intermediates.SaveIntermediate,
  ]
  x = _x()
  out = patched_res(x)
  vals = [v.value for v in _savers(patched_res)]
  assert len(vals) == 4
  xs = x.unwrap("batch", "features")
  np.testing.assert_allclose(vals[2].unwrap("batch", "features"), np.tanh(xs),
                             rtol=1e-6)
  np.testing.assert_allclose(
      out.unwrap("batch", "features"), xs + np.tanh(xs), rtol=1e-6
  )
