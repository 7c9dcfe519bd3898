"""Tests for penzai.nn.layer_stack."""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.core import tree_util

N_LAYERS, FEATURES = 3, 4


def build_block(init_base_rng, name):
  """A residual-free block: Affine then tanh, features -> features."""
  return pz.nn.Sequential([
      pz.nn.Affine.from_config(
          name=name,
          init_base_rng=init_base_rng,
          input_axes={"features": FEATURES},
          output_axes={"features": FEATURES},
      ),
      pz.nn.Elementwise(jnp.tanh),
      pz.nn.ConstantRescale(by=0.5),
  ])


def _stack(key=jax.random.key(0)):
  return pz.nn.LayerStack.from_sublayer_builder(
      builder=build_block,
      stack_axis="layers",
      stack_axis_size=N_LAYERS,
      init_base_rng=key,
      builder_kwargs=dict(name="blocks"),
  )


def _unrolled(stack_sublayers):
  """The equivalent Sequential of per-layer slices (parameters sliced)."""
  def slice_layer(i):
    return (
        pz.select(stack_sublayers)
        .at_instances_of(pz.ParameterValue)
        .apply(lambda p: pz.ParameterValue(
            label=p.label, value=p.value[{"layers": i}], metadata=p.metadata))
    )
  return pz.nn.Sequential([slice_layer(i) for i in range(N_LAYERS)])


def _x():
  return pz.nx.wrap(
      jax.random.normal(jax.random.key(5), (2, FEATURES)), "batch", "features"
  )


def test_builder_stacks_parameters_with_same_labels():
  stack = _stack()
  assert type(stack) is pz.nn.LayerStack
  assert stack.stack_axis == "layers" and stack.stack_axis_size == N_LAYERS
  params = pz.unbind_params(stack)[1]
  assert [p.label for p in params] == [
      "blocks/Linear.weights", "blocks/AddBias.bias"
  ]
  weights, bias = (p.value for p in params)
  assert list(weights.named_shape)[0] == "layers"
  assert dict(weights.named_shape) == {
      "layers": N_LAYERS, "features": FEATURES, "features_out": FEATURES
  }
  # Constants (zero biases) are broadcast per layer too.
  assert dict(bias.named_shape) == {"layers": N_LAYERS, "features": FEATURES}
  # Per-layer weights differ (one key per layer).
  w = weights.unwrap("layers", "features", "features_out")
  assert not np.allclose(w[0], w[1])
  # Python data in fields is kept as the builder returned it.
  rescale = stack.stacked_sublayers.sublayers[2]
  assert rescale.by == 0.5 and isinstance(rescale.by, float)


def test_builder_without_key_gives_same_structure_with_slots():
  with_slots = pz.nn.LayerStack.from_sublayer_builder(
      build_block, "layers", N_LAYERS, None, dict(name="blocks")
  )
  slots = pz.select(with_slots).at_instances_of(pz.ParameterSlot).get_sequence()
  assert slots == (
      pz.ParameterSlot("blocks/Linear.weights"),
      pz.ParameterSlot("blocks/AddBias.bias"),
  )
  unbound = pz.unbind_params(_stack())[0]
  assert jax.tree_util.tree_structure(unbound) == jax.tree_util.tree_structure(with_slots)


def test_stack_matches_unrolled_sequential_outputs_and_gradients():
  stack = _stack()
  x = _x()
  unbound, params = pz.unbind_params(stack, freeze=True)

  def stacked_loss(ps):
    model = pz.bind_variables(unbound, ps)
    return model(x).untag("batch", "features").sum().unwrap()

  def unrolled_loss(ps):
    model = _unrolled(pz.bind_variables(unbound, ps).stacked_sublayers)
    return model(x).untag("batch", "features").sum().unwrap()

  out_stack = stack(x)
  out_unrolled = _unrolled(pz.freeze_params(stack.stacked_sublayers))(x)
  np.testing.assert_allclose(
      out_stack.unwrap("batch", "features"),
      out_unrolled.unwrap("batch", "features"), rtol=1e-6,
  )
  # Hand-written check of one layer too.
  w, b = (p.value for p in params)
  h = x.unwrap("batch", "features")
  for i in range(N_LAYERS):
    h = 0.5 * jnp.tanh(h @ w.unwrap("layers", "features", "features_out")[i]
                       + b.unwrap("layers", "features")[i])
  np.testing.assert_allclose(out_stack.unwrap("batch", "features"), h, rtol=1e-5, atol=1e-6)

  # (jit: one compilation instead of one per primitive of the backward pass)
  g_stack = jax.jit(jax.grad(stacked_loss))(params)
  g_unrolled = jax.jit(jax.grad(unrolled_loss))(params)
  for a, b_ in zip(jax.tree_util.tree_leaves(g_stack), jax.tree_util.tree_leaves(g_unrolled)):
    np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-6)


def test_key_path_reveals_stack_axis():
  stack = _stack()
  (path, _), *_ = jax.tree_util.tree_flatten_with_path(pz.freeze_params(stack))[0]
  key = path[0]
  assert key == pz.nn.LayerStackGetAttrKey(
      name="stacked_sublayers", stack_axis="layers", stack_axis_size=N_LAYERS
  )
  assert isinstance(key, tree_util.CustomGetAttrKey)
  assert str(key) == ".stacked_sublayers"
  assert pz.nn.layerstack_axes_from_keypath(path) == {"layers": N_LAYERS}
  assert pz.nn.layerstack_axes_from_keypath(
      (key, jax.tree_util.GetAttrKey("x"),
       pz.nn.LayerStackGetAttrKey("y", "inner", 2))
  ) == {"layers": N_LAYERS, "inner": 2}
  assert pz.nn.layerstack_axes_from_keypath(()) == {}
  assert pz.nn.LayerStackVarBehavior.SHARED.value == 1
  assert pz.nn.LayerStackVarBehavior.PER_LAYER.value == 2


@pz.pytree_dataclass
class CountingLayer(pz.nn.Layer):
  """Adds its per-layer offset; records per-layer input sums and counts calls."""

  offset: Any
  seen: pz.StateVariable
  calls: Any
  scale: float = dataclasses.field(metadata={"pytree_node": False})

  def __call__(self, x, **side_inputs):
    # Python floats stay concrete inside the scan body.
    assert isinstance(self.scale, float)
    self.seen.value = self.seen.value + x.untag("features").sum()
    if self.calls is not None:
      self.calls.value = self.calls.value + 1
    side_inputs["counter"].value = side_inputs["counter"].value + 1
    return x * self.scale + self.offset.value


def build_counting(init_base_rng, calls=None):
  return CountingLayer(
      offset=pz.nn.make_parameter(
          "offset", init_base_rng,
          lambda k: pz.nx.wrap(jax.random.normal(k, (FEATURES,)), "features"),
      ),
      seen=pz.StateVariable(pz.nx.zeros({"batch": 2}), label="seen"),
      calls=calls,
      scale=0.5,
  )


def test_state_variables_per_layer_and_shared_side_input():
  stack = pz.nn.LayerStack.from_sublayer_builder(
      build_counting, "layers", N_LAYERS, jax.random.key(1), {}
  )
  seen = stack.stacked_sublayers.seen
  assert seen.metadata == {
      "layerstack_axes": {"layers": pz.nn.LayerStackVarBehavior.PER_LAYER}
  }
  assert dict(seen.value.named_shape) == {"layers": N_LAYERS, "batch": 2}
  x = _x()
  counter = pz.StateVariable(jnp.array(0), label="counter")
  out = stack(x, counter=counter)
  assert int(counter.value) == N_LAYERS
  offsets = stack.stacked_sublayers.offset.value.unwrap("layers", "features")
  h = x.unwrap("batch", "features")
  sums = []
  for i in range(N_LAYERS):
    sums.append(h.sum(axis=1))
    h = h * 0.5 + offsets[i]
  np.testing.assert_allclose(out.unwrap("batch", "features"), h, rtol=1e-6)
  assert list(seen.value.named_shape)[0] == "layers"
  np.testing.assert_allclose(seen.value.unwrap("layers", "batch"), np.stack(sums), rtol=1e-6)


def test_state_updates_agree_between_eager_variable_jit_and_stateless_call():
  def fresh():
    shared_calls = pz.StateVariable(
        jnp.array(0),
        label="calls",
        metadata={"layerstack_axes": {"layers": pz.nn.LayerStackVarBehavior.SHARED}},
    )
    stack = pz.nn.LayerStack.from_sublayer_builder(
        build_counting, "layers", N_LAYERS, jax.random.key(1), {}
    )
    return (
        pz.select(stack).at(lambda s: s.stacked_sublayers.calls).set(shared_calls),
        shared_calls,
    )

  x = _x()
  eager, eager_calls = fresh()
  eager_counter = pz.StateVariable(jnp.array(0), label="counter")
  eager_out = eager(x, counter=eager_counter)
  eager(x, counter=eager_counter)
  assert int(eager_calls.value) == 2 * N_LAYERS
  assert int(eager_counter.value) == 2 * N_LAYERS

  jitted, jit_calls = fresh()
  jit_counter = pz.StateVariable(jnp.array(0), label="counter")
  call = pz.variable_jit(lambda m, v, counter: m(v, counter=counter))
  jit_out = call(jitted, x, jit_counter)
  call(jitted, x, jit_counter)
  np.testing.assert_allclose(jit_out.unwrap("batch", "features"),
                             eager_out.unwrap("batch", "features"), rtol=1e-6)
  assert int(jit_calls.value) == 2 * N_LAYERS
  assert int(jit_counter.value) == 2 * N_LAYERS
  np.testing.assert_allclose(
      jitted.stacked_sublayers.seen.value.unwrap("layers", "batch"),
      eager.stacked_sublayers.seen.value.unwrap("layers", "batch"), rtol=1e-6,
  )

  model, _ = fresh()
  unbound, values = pz.unbind_state_vars(model, freeze=True)
  counter_slot_model = pz.StateVariable(jnp.array(0), label="counter")
  out, new_values = unbound.stateless_call(values, x, counter=counter_slot_model)
  np.testing.assert_allclose(out.unwrap("batch", "features"),
                             eager_out.unwrap("batch", "features"), rtol=1e-6)
  by_label = {v.label: v for v in new_values}
  assert int(by_label["calls"].value) == N_LAYERS


def _stack_with_state(seen_metadata, seen_value=None):
  stack = pz.nn.LayerStack.from_sublayer_builder(
      build_counting, "layers", N_LAYERS, jax.random.key(1), {}
  )
  seen = stack.stacked_sublayers.seen
  new_seen = pz.StateVariable(
      seen.value if seen_value is None else seen_value,
      label="seen", metadata=seen_metadata,
  )
  return pz.select(stack).at(lambda s: s.stacked_sublayers.seen).set(new_seen), new_seen


def test_errors_for_bad_state_variables():
  x = _x()
  counter = pz.StateVariable(jnp.array(0), label="counter")
  stack, _ = _stack_with_state({})
  with pytest.raises(ValueError, match="layerstack_axes"):
    stack(x, counter=counter)
  stack, _ = _stack_with_state(
      {"layerstack_axes": {"layers": pz.nn.LayerStackVarBehavior.SHARED}}
  )
  with pytest.raises(ValueError, match="layers"):
    stack(x, counter=counter)
  stack, _ = _stack_with_state(
      {"layerstack_axes": {"layers": pz.nn.LayerStackVarBehavior.PER_LAYER}},
      seen_value=pz.nx.zeros({"batch": 2}),
  )
  with pytest.raises(ValueError, match="Per-layer variable 'seen'"):
    stack(x, counter=counter)
  stack, seen = _stack_with_state(
      {"layerstack_axes": {"layers": pz.nn.LayerStackVarBehavior.PER_LAYER}}
  )
  with pytest.raises(ValueError, match="side input"):
    stack(x, counter=seen)
  stack, _ = _stack_with_state({"layerstack_axes": {"layers": "sideways"}})
  with pytest.raises(ValueError, match="sideways"):
    stack(x, counter=counter)


def test_error_for_parameter_side_input_and_shape_changing_layers():
  stack = _stack()
  with pytest.raises(ValueError, match="Unsupported variable types found in layer stack"):
    stack(_x(), extra=pz.Parameter(value=jnp.ones(()), label="p"))

  def widen(init_base_rng):
    return pz.nn.Linear.from_config(
        name="w", init_base_rng=init_base_rng,
        input_axes={"features": FEATURES}, output_axes={"wide": 2},
    )

  bad = pz.nn.LayerStack.from_sublayer_builder(widen, "layers", 2, jax.random.key(0), {})
  with pytest.raises(ValueError, match="same structure"):
    bad(_x())


def test_builder_rejects_unnamed_variable_values_and_existing_axis_entry():
  def unnamed(init_base_rng):
    return CountingLayer(
        offset=pz.Parameter(value=jnp.zeros(FEATURES), label="raw"),
        seen=pz.StateVariable(pz.nx.zeros({"batch": 2}), label="seen"),
        calls=None, scale=0.5,
    )

  with pytest.raises(ValueError, match="only contain NamedArrays"):
    pz.nn.LayerStack.from_sublayer_builder(unnamed, "layers", 2, jax.random.key(0), {})

  def already(init_base_rng):
    layer = build_counting(init_base_rng)
    return dataclasses.replace(layer, seen=pz.StateVariable(
        pz.nx.zeros({"batch": 2}), label="seen",
        metadata={"layerstack_axes": {"layers": pz.nn.LayerStackVarBehavior.SHARED}},
    ))

  with pytest.raises(ValueError, match="layers"):
    pz.nn.LayerStack.from_sublayer_builder(already, "layers", 2, jax.random.key(0), {})


def test_kv_caching_attention_inside_layer_stack():
  """KV caches created with layerstack_axes are per-layer state in a stack."""
  def build_attn(init_base_rng):
    lin = lambda n: pz.nn.Linear.from_config(
        name=n, init_base_rng=init_base_rng,
        input_axes={"features": FEATURES}, output_axes={"proj": 2},
    )
    return pz.nn.Attention(
        input_to_query=lin("q"),
        input_to_key=pz.nn.Sequential([lin("k"), pz.nn.RenameAxes("seq", "kv_seq")]),
        input_to_value=pz.nn.Sequential([lin("v"), pz.nn.RenameAxes("seq", "kv_seq")]),
        query_key_to_attn=pz.nn.Sequential([
            pz.nn.NamedEinsum((("seq", "proj"), ("kv_seq", "proj")), ("seq", "kv_seq")),
            pz.nn.Softmax("kv_seq"),
        ]),
        attn_value_to_output=pz.nn.Sequential([
            pz.nn.NamedEinsum((("seq", "kv_seq"), ("kv_seq", "proj")), ("seq", "proj")),
            pz.nn.Linear.from_config(
                name="o", init_base_rng=init_base_rng,
                input_axes={"proj": 2}, output_axes={"features": FEATURES},
            ),
        ]),
    )

  stack = pz.nn.LayerStack.from_sublayer_builder(
      build_attn, "layers", 2, jax.random.key(0), {}
  )
  keypath_axes = {}

  def to_cached(keypath, attn):
    keypath_axes.update(pz.nn.layerstack_axes_from_keypath(keypath))
    return pz.nn.KVCachingAttention.from_uncached(
        attn, "kv_seq", 3, {"batch": 1, "proj": 2}, "end", cache_label="cache",
        layerstack_axes=pz.nn.layerstack_axes_from_keypath(keypath),
    )

  cached = pz.select(stack).at_instances_of(pz.nn.Attention).apply(to_cached, with_keypath=True)
  assert keypath_axes == {"layers": 2}
  x = pz.nx.ones({"batch": 1, "seq": 1, "features": FEATURES})
  out = cached(x, end=0)
  assert dict(out.named_shape) == {"batch": 1, "seq": 1, "features": FEATURES}
  k_cache, _ = cached.stacked_sublayers.kv_cache.value
  assert list(k_cache.named_shape)[0] == "layers"
  k = k_cache.unwrap("layers", "batch", "proj", "kv_seq")
  assert np.any(k[:, :, :, 0] != 0) and not np.any(k[:, :, :, 1:])


def test_random_stream_side_input_is_threaded_through_layers():
  def build_dropout(init_base_rng):
    del init_base_rng
    return pz.nn.StochasticDropout(0.5)

  stack = pz.nn.LayerStack.from_sublayer_builder(
      build_dropout, "layers", N_LAYERS, None, {}
  )
  x = pz.nx.ones({"batch": 2, "features": FEATURES})
  stream = pz.RandomStream.from_base_key(jax.random.key(4))
  out = stack(x, random_stream=stream)
  assert int(stream.offset.value) == N_LAYERS
  unrolled = pz.nn.Sequential([pz.nn.StochasticDropout(0.5)] * N_LAYERS)
  expected = unrolled(x, random_stream=pz.RandomStream.from_base_key(jax.random.key(4)))
  np.testing.assert_array_equal(
      out.unwrap("batch", "features"), expected.unwrap("batch", "features")
  )


def test_builder_rejects_unnamed_leaves_that_depend_on_the_key():
  def random_scale(init_base_rng):
    return pz.nn.ConstantRescale(by=jax.random.uniform(init_base_rng))

  with pytest.raises(ValueError, match="depends on the initialization key"):
    pz.nn.LayerStack.from_sublayer_builder(
        random_scale, "layers", 2, jax.random.key(0), {}
    )
