"""`dsl.spec_of`: from built, hand-built and edited layer trees back to specs."""

import pathlib

import jax
import pytest

from penzai import dsl, pz
from penzai.models import simple_mlp

SPECS = pathlib.Path(__file__).resolve().parents[2] / "examples" / "specs"


def _cheaply_bound(spec):
  """The built model with zero-valued parameters of the statically known shapes (no initializers run)."""
  report = dsl.check(spec)
  values = [pz.ParameterValue(value=pz.nx.zeros(shape), label=label) for label, shape in report.labels.items()]
  return pz.bind_variables(dsl.build(spec), values)


def _labels(model):
  return [p.label for p in pz.select(model).at_instances_of(pz.Parameter | pz.ParameterSlot).get_sequence()]


@pytest.mark.parametrize("stem", ["mlp", "residual_mlp", "transformer_block", "tied_embedding", "tiny_llama"])
def test_examples_round_trip_through_spec_of(stem):
  spec = dsl.load(SPECS / f"{stem}.yaml")
  built = _cheaply_bound(spec)
  recovered = dsl.spec_of(built)
  original, rebuilt = dsl.build(spec), dsl.build(recovered)
  assert _labels(rebuilt) == _labels(original)
  assert jax.tree_util.tree_structure(rebuilt) == jax.tree_util.tree_structure(original)
  assert dsl.check(recovered).total_params == dsl.check(spec).total_params


def test_hand_built_model():
  key = jax.random.key(0)
  model = pz.nn.Sequential([
      simple_mlp.MLP.from_config(init_base_rng=key, feature_sizes=[4, 8, 4], name="net/mlp"),
      pz.nn.LayerNorm.from_config(name="net/norm", init_base_rng=key, across_axes={"features": 4}),
      pz.nn.Linear.from_config(name="net/head", init_base_rng=key, input_axes={"features": 4}, output_axes={"cls": 3}),
  ])
  spec = dsl.spec_of(model)
  assert spec.name == "net"
  assert [type(n).__name__ for n in spec.model.layers] == ["MLP", "LayerNorm", "Linear"]
  assert spec.model.layers[0].feature_sizes == [4, 8, 4]
  assert dict(spec.input.named_shape) == {"batch": "B", "features": 4}
  rebuilt = dsl.build(spec)
  assert _labels(rebuilt) == _labels(model)
  assert jax.tree_util.tree_structure(rebuilt) == jax.tree_util.tree_structure(pz.unbind_params(model)[0])


def test_edited_model_can_be_saved_and_rebuilt():
  spec = dsl.load(SPECS / "mlp.yaml")
  model = dsl.build(spec, init_base_rng=jax.random.key(0))
  edited = pz.select(model).at_instances_of(pz.nn.Elementwise).apply(lambda _: pz.nn.Elementwise(jax.nn.gelu))
  new_spec = dsl.loads(dsl.dumps(dsl.spec_of(edited)), "edited.yaml")
  assert new_spec.model.layers[1].fn == "gelu"
  assert _labels(dsl.build(new_spec)) == _labels(dsl.build(spec))


def test_shared_parameters_after_edit_become_refs():
  lin = pz.nn.Linear.from_config(name="m/mix", init_base_rng=jax.random.key(0),
                                 input_axes={"features": 4}, output_axes={"features": 4})
  model = pz.nn.Sequential([lin, pz.nn.Elementwise(jax.nn.relu), lin])
  copied = pz.select(model).at_instances_of(pz.nn.Elementwise).apply(lambda e: pz.nn.Elementwise(e.fn))
  spec = dsl.spec_of(copied)
  assert spec.model.layers[2] == dsl.Ref(id=spec.model.layers[0].id)
  rebuilt = dsl.build(spec)
  assert rebuilt.sublayers[0] is rebuilt.sublayers[2]


def test_unsupported_layer_and_unbound_parameters_are_spec_errors():
  with pytest.raises(dsl.SpecError, match="has no spec node"):
    dsl.spec_of(pz.nn.Sequential([pz.nn.CheckStructure(expected=None)]))
  with pytest.raises(dsl.SpecError, match="unbound ParameterSlot"):
    dsl.spec_of(dsl.build(dsl.load(SPECS / "mlp.yaml")))


@pytest.mark.parametrize("model", [
    "{type: Transformer, variant: gpt_neox, num_attention_heads: 2, embedding_dim: 8, projection_dim: 4,"
    " mlp_hidden_dim: 8, num_decoder_blocks: 1, vocab_size: 11, rope_subset_size: 2}",
    "{type: Transformer, variant: gemma, num_kv_heads: 2, query_head_multiplier: 2, embedding_dim: 8,"
    " projection_dim: 4, mlp_hidden_dim: 8, num_decoder_blocks: 2, vocab_size: 11, final_logit_softcap: 30.0,"
    " attn_logits_soft_cap: 50.0, use_qk_norm: true, use_post_attn_norm: true, use_post_ffw_norm: true,"
    " attention_type: [{window_size: 3}, global], global_scale_factor: 8.0, local_rope_wavelength: 100.0,"
    " query_scaling_factor: 0.3}",
])
def test_transformer_lm_is_recovered_as_transformer_node(model):
  spec = dsl.loads("name: t\ninput: {named_shape: {batch: B, seq: S}, dtype: int32}\nmodel: " + model)
  recovered = dsl.spec_of(_cheaply_bound(spec))
  assert recovered.model.type == "Transformer"
  original = dsl.to_data(spec.model)
  again = dsl.to_data(recovered.model)
  # The recovered node spells every field out under a llamalike `llama` variant (same config).
  assert {k: v for k, v in again.items() if k != "variant" and original.get(k, v) != v} == {}
  assert sorted(dsl.check(recovered).labels) == sorted(dsl.check(spec).labels)
