"""The builder: ordinary pz.nn trees, labels, sharing, stacks, determinism."""

import jax
import numpy as np
import pytest

from penzai import dsl, pz


def _spec(model, named_shape=None, name="m", dtype="float32"):
  return dsl.ModelSpec(
      name=name, input=dsl.TensorSpec(named_shape=named_shape or {"batch": 2, "features": 4}, dtype=dtype), model=model)


def _labels(model):
  return [p.label for p in pz.select(model).at_instances_of(pz.Parameter | pz.ParameterSlot).get_sequence()]


def test_labels_follow_names_and_indices():
  spec = _spec(dsl.Sequential(layers=[
      dsl.Affine(input_axes={"features": 4}, output_axes={"features": 3}),
      dsl.Elementwise(fn="relu"),
      dsl.NamedGroup(name="head", layers=[dsl.Linear(input_axes={"features": 3}, output_axes={"out": 2})]),
      dsl.LayerNorm(name="norm", across_axes={"out": 2}),
  ]))
  model = dsl.build(spec)
  assert _labels(model) == [
      "m/Affine_0/Linear.weights", "m/Affine_0/AddBias.bias", "m/head/Linear_0.weights",
      "m/norm/scale.weights", "m/norm/shift.bias",
  ]
  assert type(model) is pz.nn.Sequential
  assert type(model.sublayers[0]) is pz.nn.Affine
  assert model.sublayers[2].name == "head"
  assert model.sublayers[1].fn is jax.nn.relu


def test_build_name_override_and_empty_segments():
  spec = _spec(dsl.Residual(name="", layers=[dsl.Linear(name="proj", input_axes={"features": 4}, output_axes={"features": 4})]))
  assert _labels(dsl.build(spec, name="net")) == ["net/proj.weights"]
  assert _labels(dsl.build(spec)) == ["m/proj.weights"]


def test_unbound_build_has_slots_and_bound_build_has_values():
  spec = _spec(dsl.Linear(input_axes={"features": 4}, output_axes={"out": 2}))
  slots = pz.select(dsl.build(spec)).at_instances_of(pz.ParameterSlot).get_sequence()
  assert [s.label for s in slots] == ["m.weights"]
  params = pz.select(dsl.build(spec, init_base_rng=jax.random.key(1))).at_instances_of(pz.Parameter).get_sequence()
  assert dict(params[0].value.named_shape) == {"features": 4, "out": 2}


def test_same_key_gives_identical_parameters_and_matches_from_config():
  spec = _spec(dsl.Affine(name="a", input_axes={"features": 4}, output_axes={"out": 3}), name="")
  p1 = pz.select(dsl.build(spec, init_base_rng=jax.random.key(3))).at_instances_of(pz.Parameter).get_sequence()
  p2 = pz.select(dsl.build(spec, init_base_rng=jax.random.key(3))).at_instances_of(pz.Parameter).get_sequence()
  by_hand = pz.nn.Affine.from_config(name="a", init_base_rng=jax.random.key(3), input_axes={"features": 4}, output_axes={"out": 3})
  p3 = pz.select(by_hand).at_instances_of(pz.Parameter).get_sequence()
  for a, b, c in zip(p1, p2, p3):
    np.testing.assert_array_equal(a.value.data_array, b.value.data_array)
    np.testing.assert_array_equal(a.value.data_array, c.value.data_array)


def test_ref_shares_the_same_layer_object():
  block = dsl.Linear(id="mix", name="mix", input_axes={"features": 4}, output_axes={"features": 4})
  model = dsl.build(_spec(dsl.Sequential(layers=[block, dsl.Ref(id="mix")])), init_base_rng=jax.random.key(0))
  assert model.sublayers[0] is model.sublayers[1]
  assert len({id(p) for p in pz.select(model).at_instances_of(pz.Parameter).get_sequence()}) == 1


def test_embedding_decode_ties_weights():
  spec = _spec(
      dsl.Sequential(layers=[
          dsl.EmbeddingLookup(id="emb", vocab_size=7, embedding_axes={"embedding": 4}),
          dsl.EmbeddingDecode(table="emb"),
      ]),
      named_shape={"seq": 3}, dtype="int32",
  )
  model = dsl.build(spec, init_base_rng=jax.random.key(0))
  assert model.sublayers[0].table is model.sublayers[1].table
  out = model(pz.nx.wrap(jax.numpy.array([0, 1, 6])).tag("seq"))
  assert dict(out.named_shape) == {"seq": 3, "vocabulary": 7}


def test_repeat_builds_copies_or_a_layer_stack():
  layer = dsl.Linear(name="blk", input_axes={"features": 4}, output_axes={"features": 4})
  seq = dsl.build(_spec(dsl.Repeat(count=3, layer=layer)))
  assert _labels(seq) == ["m/blk_0.weights", "m/blk_1.weights", "m/blk_2.weights"]
  stack = dsl.build(_spec(dsl.Repeat(count=3, stack=True, layer=layer)), init_base_rng=jax.random.key(0))
  assert type(stack) is pz.nn.LayerStack and stack.stack_axis_size == 3
  (param,) = pz.select(stack).at_instances_of(pz.Parameter).get_sequence()
  assert param.label == "m/blk.weights" and param.value.named_shape["blocks"] == 3
  out = stack(pz.nx.ones({"batch": 2, "features": 4}))
  assert dict(out.named_shape) == {"batch": 2, "features": 4}


def test_invalid_spec_is_not_built():
  spec = _spec(dsl.Linear(input_axes={"wrong": 4}, output_axes={"out": 2}))
  with pytest.raises(dsl.SpecError):
    dsl.build(spec, init_base_rng=jax.random.key(0))


def test_transformer_node_builds_transformer_lm():
  from penzai.models.transformer import model_parts

  spec = dsl.ModelSpec(
      name="transformer",
      input=dsl.TensorSpec(named_shape={"batch": 1, "seq": 4}, dtype="int32"),
      model=dsl.TransformerGemma(
          variant="gemma", num_kv_heads=1, query_head_multiplier=2, embedding_dim=8, projection_dim=4,
          mlp_hidden_dim=8, num_decoder_blocks=2, vocab_size=11,
          attention_type=["global", dsl.SlidingWindow(window_size=2)],
      ),
  )
  report = dsl.check(spec)
  model = dsl.build(spec)
  assert type(model) is model_parts.TransformerLM
  assert sorted(set(_labels(model))) == sorted(report.labels)
  dsl.check(spec, deep=True)


def test_dropout_nodes_and_deep_check_supply_a_random_stream():
  spec = _spec(dsl.Sequential(layers=[
      dsl.Dropout(drop_rate=0.5), dsl.Dropout(drop_rate=0.1, enabled=False, share_across_axes=["batch"])]))
  dsl.check(spec, deep=True)
  model = dsl.build(spec)
  assert type(model.sublayers[0]) is pz.nn.StochasticDropout
  assert type(model.sublayers[1]) is pz.nn.DisabledDropout
  assert model.sublayers[1].share_across_axes == ("batch",)


def test_named_group_name_defaults_to_its_segment():
  spec = _spec(dsl.Sequential(layers=[dsl.Identity(), dsl.NamedGroup(layers=[
      dsl.Linear(name="lin", input_axes={"features": 4}, output_axes={"out": 2})])]))
  model = dsl.build(spec)
  assert model.sublayers[1].name == "NamedGroup_1"
  assert _labels(model) == ["m/NamedGroup_1/lin.weights"]


def test_every_registered_activation_builds():
  from penzai.dsl import registry

  for name in registry.builtin_activation_names():
    assert callable(registry.activation(name)), name
  assert registry.activation_name_of(registry.activation("softsign")) in ("soft_sign", "softsign")
