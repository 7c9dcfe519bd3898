"""Tests for penzai.toolshed.lora."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from penzai import pz
from penzai.models import simple_mlp
from penzai.toolshed import lora


def _mlp():
  return simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(0), feature_sizes=[3, 4, 2]
  )


def _x():
  return pz.nx.wrap(
      jax.random.normal(jax.random.key(1), (5, 3)), "batch", "features"
  )


def _out(model, x):
  return np.asarray(model(x).unwrap("batch", "features"))


def test_adapter_structure_labels_and_initial_equivalence():
  base = pz.freeze_params(_mlp())
  adapted = lora.loraify_linears_in_selection(
      pz.select(base), rank=2, init_base_rng=jax.random.key(5)
  )
  adapters = (
      pz.select(adapted).at_instances_of(lora.LowRankAdapter).get_sequence()
  )
  assert len(adapters) == 2
  first = adapters[0]
  (branch,) = first.sublayers
  assert isinstance(branch, pz.nn.BranchAndAddTogether)
  pretrained, update = branch.branches
  assert pretrained.name == "Pretrained" and update.name == "Update"
  assert pretrained.sublayers[0] is base.sublayers[0].sublayers[0]
  lora_a, lora_b = update.sublayers
  assert dict(lora_a.weights.value.named_shape) == {"features": 3, "lowrank": 2}
  assert dict(lora_b.weights.value.named_shape) == {
      "lowrank": 2, "features_out": 4
  }
  np.testing.assert_array_equal(lora_b.weights.value.data_array, 0)
  assert np.any(np.asarray(lora_a.weights.value.data_array) != 0)
  _, params = pz.unbind_params(adapted)
  assert [p.label for p in params] == [
      "LoRA:MLP.sublayers[0]/Affine.sublayers[0]/LoRA_A.weights",
      "LoRA:MLP.sublayers[0]/Affine.sublayers[0]/LoRA_B.weights",
      "LoRA:MLP.sublayers[2]/Affine.sublayers[0]/LoRA_A.weights",
      "LoRA:MLP.sublayers[2]/Affine.sublayers[0]/LoRA_B.weights",
  ]
  x = _x()
  np.testing.assert_allclose(_out(adapted, x), _out(base, x), rtol=1e-6)


def test_training_updates_only_adapter_parameters():
  base = pz.freeze_params(_mlp())
  adapted = lora.loraify_linears_in_selection(
      pz.select(base), rank=2, init_base_rng=jax.random.key(5)
  )
  x = _x()
  target = jnp.ones((5, 2))
  unbound, params = pz.unbind_params(adapted, freeze=True)
  frozen_before = [
      np.asarray(v.value.data_array)
      for v in pz.select(unbound).at_instances_of(pz.ParameterValue)
      .get_sequence()
  ]

  def loss(p):
    model = pz.bind_variables(unbound, p)
    return jnp.mean((model(x).unwrap("batch", "features") - target) ** 2)

  grads = jax.grad(loss)(params)
  new_params = jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, params, grads)
  assert float(loss(new_params)) < float(loss(params))
  # Only the LoRA parameters were trainable; the pretrained ones are frozen
  # values inside the model and stay untouched.
  frozen_after = [
      np.asarray(v.value.data_array)
      for v in pz.select(unbound).at_instances_of(pz.ParameterValue)
      .get_sequence()
  ]
  assert len(frozen_before) == 4
  for a, b in zip(frozen_before, frozen_after):
    np.testing.assert_array_equal(a, b)
  # After the step, the second adapter adds x_hidden @ A @ B to the output.
  trained = pz.bind_variables(unbound, new_params)
  adapter = pz.select(trained).at_instances_of(lora.LowRankAdapter).get_sequence()[1]
  hidden = trained.sublayers[1](trained.sublayers[0](x))
  _, update = adapter.sublayers[0].branches
  a = update.sublayers[0].weights.value.unwrap("features", "lowrank")
  b = update.sublayers[1].weights.value.unwrap("lowrank", "features_out")
  base_out = base.sublayers[2](hidden).unwrap("batch", "features")
  np.testing.assert_allclose(
      _out(trained, x),
      np.asarray(base_out) + np.asarray(hidden.unwrap("batch", "features"))
      @ np.asarray(a) @ np.asarray(b),
      rtol=1e-5, atol=1e-6,
  )


def test_parallel_axes_are_carried_and_subselection_only_adapts_it():
  linear = pz.nn.Linear.from_config(
      name="heads", init_base_rng=jax.random.key(2),
      input_axes={"embedding": 3}, output_axes={"projection": 4},
      parallel_axes={"heads": 2},
  )
  adapter = lora.LowRankAdapter.from_linear(
      linear, name="q", init_base_rng=jax.random.key(3), rank=1,
      lowrank_axis="r",
  )
  update = adapter.sublayers[0].branches[1]
  assert dict(update.sublayers[0].weights.value.named_shape) == {
      "embedding": 3, "r": 1, "heads": 2
  }
  assert update.sublayers[0].weights.label == "q/LoRA_A.weights"
  assert update.sublayers[1].weights.label == "q/LoRA_B.weights"
  x = pz.nx.wrap(jnp.ones((2, 3)), "heads", "embedding")
  np.testing.assert_allclose(
      adapter(x).unwrap("heads", "projection"),
      linear(x).unwrap("heads", "projection"),
  )
  model = _mlp()
  partial = lora.loraify_linears_in_selection(
      pz.select(model).at(lambda m: m.sublayers[2]), rank=1,
      init_base_rng=None,
  )
  assert isinstance(partial.sublayers[0].sublayers[0], pz.nn.Linear)
  assert isinstance(partial.sublayers[2].sublayers[0], lora.LowRankAdapter)
  slots = pz.select(partial).at_instances_of(pz.ParameterSlot).get_sequence()
  assert [s.label for s in slots] == [
      "LoRA:MLP.sublayers[2]/Affine.sublayers[0]/LoRA_A.weights",
      "LoRA:MLP.sublayers[2]/Affine.sublayers[0]/LoRA_B.weights",
  ]


def test_lora_inside_a_layer_stack_is_per_layer():
  stack = pz.nn.LayerStack.from_sublayer_builder(
      builder=pz.nn.Linear.from_config,
      stack_axis="blocks",
      stack_axis_size=3,
      init_base_rng=jax.random.key(0),
      builder_kwargs=dict(
          name="lin", input_axes={"features": 3}, output_axes={"out": 3}
      ),
  )
  model = pz.nn.Sequential([stack])
  adapted = lora.loraify_linears_in_selection(
      pz.select(pz.freeze_params(model)), rank=2,
      init_base_rng=jax.random.key(1),
  )
  _, params = pz.unbind_params(adapted)
  assert [p.label for p in params] == [
      "LoRA:Sequential.sublayers[0]/LayerStack.stacked_sublayers/LoRA_A.weights",
      "LoRA:Sequential.sublayers[0]/LayerStack.stacked_sublayers/LoRA_B.weights",
  ]
  assert dict(params[0].value.named_shape) == {
      "blocks": 3, "features": 3, "lowrank": 2
  }
  x = pz.nx.wrap(jnp.ones((2, 3)), "batch", "features")
  rename = pz.nn.RenameAxes(old="out", new="features")
  base_out = pz.nn.Sequential([
      pz.select(stack).at_instances_of(pz.nn.Linear).apply(
          lambda lin: pz.nn.Sequential([lin, rename])
      )
  ])
  adapted_out = pz.select(adapted).at_instances_of(lora.LowRankAdapter).apply(
      lambda ad: pz.nn.Sequential([ad, rename])
  )
  np.testing.assert_allclose(
      adapted_out(x).unwrap("batch", "features"),
      base_out(x).unwrap("batch", "features"),
      rtol=1e-6,
  )
