"""llamalike_common: built structure, labels, options, errors and model properties."""

from __future__ import annotations

import dataclasses

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.models.transformer import model_parts
from penzai.models.transformer.variants import llamalike_common as lc

SW = lc.AttentionTypeSlidingWindowCausal
G = lc.AttentionTypeGlobalCausal
E, P, F, V, SEQ = 16, 4, 24, 29, 6


def _config(**overrides) -> lc.LlamalikeTransformerConfig:
    base = dict(
        num_kv_heads=2, query_head_multiplier=2, embedding_dim=E, projection_dim=P,
        mlp_hidden_dim=F, num_decoder_blocks=2, vocab_size=V, mlp_variant="swiglu",
        tie_embedder_and_logits=False,
    )
    return lc.LlamalikeTransformerConfig(**{**base, **overrides})


@pz.variable_jit
def _call(model, tokens):
    return model(tokens)


def _random_model(config: lc.LlamalikeTransformerConfig, seed: int):
    """A model with random numpy weights of the shapes `init_base_rng` would give.

    (Shapes come from `jax.eval_shape`, so no JAX random-number kernels are
    compiled; the real random init is tested separately on a tiny config.)
    """
    shapes = jax.eval_shape(
        lambda key: pz.unbind_params(lc.build_llamalike_transformer(config, key), freeze=True)[1],
        jax.random.key(0),
    )
    rng = np.random.RandomState(seed)
    params = [
        pz.Parameter(
            value=pz.nx.wrap(
                (rng.randn(*p.value.data_array.shape) * 0.3).astype(np.float32)
            ).tag(*p.value.named_shape),
            label=p.label,
        )
        for p in shapes
    ]
    return pz.bind_variables(lc.build_llamalike_transformer(config), params)


@pytest.fixture(scope="module")
def full_model():
    """A randomly initialized model with every optional feature switched on."""
    config = _config(
        tie_embedder_and_logits=True, use_qk_norm=True, use_post_attn_norm=True,
        use_post_ffw_norm=True, final_logit_softcap=30.0, attn_logits_soft_cap=50.0,
        attention_type=(SW(3), G()), mlp_variant="geglu_approx",
    )
    return _random_model(config, 0)


def _labels(model) -> list:
    return [
        v.label for v in pz.select(model).at_instances_of(
            (pz.Parameter, pz.ParameterSlot)
        ).get_sequence()
    ]


def test_config_fields_defaults_and_keyword_only():
    fields = dataclasses.fields(lc.LlamalikeTransformerConfig)
    assert [f.name for f in fields][:9] == [
        "num_kv_heads", "query_head_multiplier", "embedding_dim", "projection_dim",
        "mlp_hidden_dim", "num_decoder_blocks", "vocab_size", "mlp_variant",
        "tie_embedder_and_logits",
    ]
    config = _config()
    assert (config.rope_wavelength, config.rms_norm_eps) == (10_000, 1e-6)
    assert config.attention_type == G() and config.query_scaling_factor == "default"
    assert config.parameter_dtype == jnp.float32 and config.use_layer_stack is False
    with pytest.raises(TypeError):
        lc.LlamalikeTransformerConfig(2, 2, E, P, F, 2, V, "swiglu", False)  # type: ignore[misc]
    assert isinstance(SW(3), lc.AttentionType) and isinstance(G(), lc.AttentionType)


def test_random_init_creates_labelled_parameters():
    config = _config(
        num_decoder_blocks=1, vocab_size=5, embedding_dim=4, mlp_hidden_dim=4,
        tie_embedder_and_logits=True,
    )
    model = lc.build_llamalike_transformer(config, jax.random.key(3), name="m")
    params = pz.select(model).at_instances_of(pz.Parameter).get_sequence()
    by_label = {p.label: p for p in params}
    assert len(by_label) == 11 and len(params) == 12  # the tied table appears twice
    norm = by_label["m/block_0/pre_attention_norm/scale.weights"].value
    np.testing.assert_array_equal(np.asarray(norm.unwrap("embedding")), np.ones(4))
    query = by_label["m/block_0/attention/query.weights"].value
    assert dict(query.named_shape) == {"embedding": 4, "head_groups": 2, "query_heads": 2, "projection": P}
    assert float(np.abs(np.asarray(query.unwrap(*query.named_shape))).max()) > 0


def test_block_paths_and_layer_types(full_model):
    body = full_model.body.sublayers
    assert isinstance(body[0], pz.nn.EmbeddingLookup)
    assert isinstance(body[1], pz.nn.ConstantRescale)  # tied: sqrt(E) scaling
    np.testing.assert_allclose(float(body[1].by), np.sqrt(E), rtol=1e-6)
    block = body[2]
    assert isinstance(block, model_parts.TransformerBlock)
    attention = block.sublayers[0].delta.sublayers[1]
    assert isinstance(attention, pz.nn.Attention)
    assert isinstance(block.sublayers[1].delta.sublayers[1], model_parts.TransformerFeedForward)
    assert isinstance(attention.query_key_to_attn.sublayers[-1], pz.nn.Softmax)
    assert isinstance(attention.query_key_to_attn.sublayers[1], pz.nn.TanhSoftCap)
    assert isinstance(
        attention.query_key_to_attn.sublayers[2], pz.nn.ApplyCausalSlidingWindowAttentionMask
    )
    second = body[3].sublayers[0].delta.sublayers[1]
    assert isinstance(second.query_key_to_attn.sublayers[2], pz.nn.ApplyCausalAttentionMask)
    query = attention.input_to_query.sublayers
    assert [type(layer) for layer in query] == [
        pz.nn.Linear, pz.nn.RMSLayerNorm, pz.nn.ApplyRoPE, pz.nn.ConstantRescale
    ]
    np.testing.assert_allclose(float(query[-1].by), P**-0.5, rtol=1e-6)
    assert isinstance(body[-3], pz.nn.RMSLayerNorm)
    assert isinstance(body[-2], pz.nn.EmbeddingDecode)
    assert isinstance(body[-1], pz.nn.TanhSoftCap)
    gate = block.sublayers[1].delta.sublayers[1].sublayers[0].branches[0]
    assert isinstance(gate, pz.nn.NamedGroup) and gate.name == "gate"


def test_parameter_labels_and_shapes(full_model):
    params = pz.select(full_model).at_instances_of(pz.Parameter).get_sequence()
    shapes = {p.label: dict(p.value.named_shape) for p in params}
    prefix = "transformer/block_0/"
    assert shapes[prefix + "attention/query.weights"] == {
        "embedding": E, "head_groups": 2, "query_heads": 2, "projection": P
    }
    assert shapes[prefix + "attention/key.weights"] == {"embedding": E, "head_groups": 2, "projection": P}
    assert shapes[prefix + "attention/output.weights"] == {
        "head_groups": 2, "query_heads": 2, "projection": P, "embedding": E
    }
    assert shapes[prefix + "attention/query_norm/scale.weights"] == {"projection": P}
    assert shapes[prefix + "mlp/gating_linear.weights"] == {"embedding": E, "neurons": F}
    assert shapes[prefix + "mlp/out_linear.weights"] == {"neurons": F, "embedding": E}
    for norm in ("pre_attention_norm", "post_attention_norm", "pre_ffw_norm", "post_ffw_norm"):
        assert shapes[prefix + f"{norm}/scale.weights"] == {"embedding": E}
    assert shapes["transformer/embedder.embeddings"] == {"vocabulary": V, "embedding": E}
    assert "transformer/lm_head.weights" not in shapes
    tables = [p for p in params if p.label == "transformer/embedder.embeddings"]
    assert len(tables) == 2 and tables[0] is tables[1]


@pytest.mark.parametrize(
    "kv,qm,common,query_only",
    [(3, 1, {"heads": 3}, {}), (1, 3, {}, {"query_heads": 3}),
     (2, 3, {"head_groups": 2}, {"query_heads": 3})],
)
def test_head_axes_metadata(kv, qm, common, query_only):
    model = lc.build_llamalike_transformer(_config(num_kv_heads=kv, query_head_multiplier=qm))
    assert model.metadata == model_parts.TransformerMetadata(
        common_head_axes=common, query_only_head_axes=query_only, embedding_dim=E,
        projection_dim=P, mlp_hidden_dim=F, vocab_size=V, activation_dtype=jnp.float32,
    )
    einsum = pz.select(model).at_instances_of(pz.nn.NamedEinsum).get_sequence()[0]
    assert set(einsum.output_axes) == {"seq", *common, *query_only, "kv_seq"}


def test_skeleton_has_slots_with_exact_labels():
    model = lc.build_llamalike_transformer(_config(num_decoder_blocks=1), name="lm")
    assert all(
        isinstance(v, pz.ParameterSlot)
        for v in pz.select(model).at_instances_of((pz.Parameter, pz.ParameterSlot)).get_sequence()
    )
    assert sorted(set(_labels(model))) == sorted([
        "lm/embedder.embeddings", "lm/final_norm/scale.weights", "lm/lm_head.weights",
        "lm/block_0/pre_attention_norm/scale.weights", "lm/block_0/pre_ffw_norm/scale.weights",
        "lm/block_0/attention/query.weights", "lm/block_0/attention/key.weights",
        "lm/block_0/attention/value.weights", "lm/block_0/attention/output.weights",
        "lm/block_0/mlp/gating_linear.weights", "lm/block_0/mlp/value_linear.weights",
        "lm/block_0/mlp/out_linear.weights",
    ])


def test_layer_stack_labels_and_dtype_cast():
    model = lc.build_llamalike_transformer(
        _config(use_layer_stack=True, parameter_dtype=jnp.bfloat16)
    )
    body = model.body.sublayers
    assert isinstance(body[1], pz.nn.CastToDType) and body[1].dtype == jnp.float32
    stack = body[2]
    assert isinstance(stack, pz.nn.LayerStack)
    assert (stack.stack_axis, stack.stack_axis_size) == ("blocks", 2)
    assert isinstance(stack.stacked_sublayers, model_parts.TransformerBlock)
    assert "transformer/blocks/attention/query.weights" in _labels(model)


def test_stacked_model_matches_unstacked_with_same_weights():
    config = _config(num_kv_heads=1, query_head_multiplier=2)
    plain = _random_model(config, 1)
    stacked_skeleton = lc.build_llamalike_transformer(dataclasses.replace(config, use_layer_stack=True))
    values = {p.label: p.value for p in pz.select(plain).at_instances_of(pz.Parameter).get_sequence()}
    bound = []
    for label in set(_labels(stacked_skeleton)):
        if "/blocks/" in label:
            suffix = label.split("/blocks/")[1]
            value = pz.nx.stack([values[f"transformer/block_{i}/{suffix}"] for i in range(2)], "blocks")
        else:
            value = values[label]
        bound.append(pz.Parameter(value=value, label=label))
    stacked = pz.bind_variables(stacked_skeleton, bound)
    tokens = pz.nx.wrap(jnp.array([[3, 1, 4, 1, 5, 9]])).tag("batch", "seq")
    np.testing.assert_allclose(
        np.asarray(_call(stacked, tokens).unwrap("batch", "seq", "vocabulary")),
        np.asarray(_call(plain, tokens).unwrap("batch", "seq", "vocabulary")),
        atol=1e-5,
    )


def test_configuration_errors():
    with pytest.raises(ValueError, match="Layer stack does not currently support per-layer attention types."):
        lc.build_llamalike_transformer(_config(use_layer_stack=True, attention_type=[G(), SW(2)]))
    with pytest.raises(
        ValueError,
        match="Per-layer attention types must have a length that divides the number of blocks.",
    ):
        lc.build_llamalike_transformer(_config(attention_type=(G(), SW(2), G())))
    with pytest.raises(ValueError, match="block_index must be specified if attention_type is a sequence."):
        lc.build_llamalike_attention("a", None, _config(attention_type=(G(), SW(2))))
    with pytest.raises(ValueError, match="Unsupported MLP variant relu"):
        lc.build_llamalike_feedforward("mlp", None, _config(mlp_variant="relu"))
    with pytest.raises(ValueError, match="Unsupported attention type"):
        lc.build_llamalike_attention(
            "a", None, _config(attention_type=("local",)), block_index=0  # type: ignore[arg-type]
        )


def test_attention_type_selection_and_rope_settings():
    config = _config(
        attention_type=(SW(5), G()), rope_wavelength=1e6, local_rope_wavelength=1e4,
        global_scale_factor=8.0, query_scaling_factor=0.25,
    )
    local = lc.build_llamalike_attention("a", None, config, block_index=2)
    global_ = lc.build_llamalike_attention("a", None, config, block_index=3)
    local_rope = local.input_to_query.sublayers[1]
    global_rope = global_.input_to_key.sublayers[1]
    assert (local_rope.max_wavelength, local_rope.scale_factor) == (1e4, 1.0)
    assert (global_rope.max_wavelength, global_rope.scale_factor) == (1e6, 8.0)
    assert local.query_key_to_attn.sublayers[1].sliding_window_size == 5
    assert float(local.input_to_query.sublayers[-1].by) == 0.25
    masked = local.query_key_to_attn.sublayers[1].masked_out_value
    assert masked.dtype == jnp.float32 and float(masked) == pytest.approx(-2.3819763e38)


@pytest.fixture(scope="module")
def causal_model():
    return _random_model(_config(attention_type=(SW(3), G())), 2)


@hypothesis.given(
    tokens=st.lists(st.integers(0, V - 1), min_size=SEQ, max_size=SEQ),
    replacement=st.lists(st.integers(0, V - 1), min_size=SEQ, max_size=SEQ),
    cut=st.integers(1, SEQ - 1),
)
def test_logits_never_depend_on_future_tokens(causal_model, tokens, replacement, cut):
    changed = tokens[:cut] + replacement[cut:]
    both = pz.nx.wrap(jnp.array([tokens, changed])).tag("batch", "seq")
    logits = np.asarray(_call(causal_model, both).unwrap("batch", "seq", "vocabulary"))
    np.testing.assert_allclose(logits[0, :cut], logits[1, :cut], atol=1e-5)
    if tokens[cut] != changed[cut]:
        # The changed token itself always influences its own logits.
        assert not np.allclose(logits[0, cut], logits[1, cut], atol=1e-6)
