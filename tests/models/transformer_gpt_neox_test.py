"""GPT-NeoX: built structure and conversion from HuggingFace transformers 5.x."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.models.transformer import model_parts
from penzai.models.transformer.variants import gpt_neox

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 101


@pz.variable_jit
def _call(model, tokens, side):
    """Runs `model` compiled (one compile per model structure and input shape)."""
    return model(tokens, **side)


def _tiny_neox(seed: int = 0, **extra):
    torch.manual_seed(seed)
    config = transformers.GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        **extra,
    )
    model = transformers.GPTNeoXForCausalLM(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model


def _tokens() -> np.ndarray:
    return np.random.RandomState(5).randint(0, VOCAB, size=(2, 6))


def _compare(hf, model, tokens, atol=1e-4):
    with torch.no_grad():
        expected = hf(torch.tensor(tokens)).logits.numpy()
    out = _call(model, pz.nx.wrap(tokens).tag("batch", "seq"), {})
    np.testing.assert_allclose(
        np.asarray(out.unwrap("batch", "seq", "vocabulary")), expected, atol=atol
    )


@pytest.fixture(scope="module")
def hf_neox():
    # rotary_pct is folded into rope_parameters["partial_rotary_factor"] in 5.x.
    return _tiny_neox(rotary_pct=0.5, rotary_emb_base=777.0)


def test_logits_match_huggingface(hf_neox):
    model = gpt_neox.gpt_neox_from_huggingface_model(hf_neox)
    ropes = pz.select(model).at_instances_of(pz.nn.ApplyRoPEToSubset).get_sequence()
    assert {(r.rope_subset_size, r.max_wavelength) for r in ropes} == {(4, 777.0)}
    _compare(hf_neox, model, _tokens())


def test_layer_stack_logits_match_huggingface(hf_neox):
    model = gpt_neox.gpt_neox_from_huggingface_model(hf_neox, use_layer_stack=True)
    labels = {p.label for p in pz.select(model).at_instances_of(pz.Parameter).get_sequence()}
    assert "transformer/blocks/attention/query/Linear.weights" in labels
    _compare(hf_neox, model, _tokens())


def test_full_rotary_and_relu_activation():
    hf = _tiny_neox(rotary_pct=1.0, hidden_act="relu")
    model = gpt_neox.gpt_neox_from_huggingface_model(hf)
    _compare(hf, model, _tokens())


def test_final_norm_uses_configured_epsilon(hf_neox):
    model = gpt_neox.gpt_neox_from_huggingface_model(hf_neox)
    final_norm = model.body.sublayers[-2]
    assert isinstance(final_norm, pz.nn.LayerNorm)
    assert final_norm.sublayers[0].epsilon == hf_neox.config.layer_norm_eps


def test_structure_and_labels_of_random_init():
    config = gpt_neox.GPTNeoXTransformerConfig(
        num_attention_heads=2,
        embedding_dim=8,
        projection_dim=4,
        mlp_hidden_dim=16,
        num_decoder_blocks=2,
        vocab_size=11,
        activation_fn="gelu_exact",
        rope_subset_size=2,
        rope_wavelength=10_000,
        layernorm_epsilon=1e-5,
        parameter_dtype=jnp.float32,
        activation_dtype=jnp.float32,
    )
    # Only shapes matter here: trace the random init without compiling it.
    model = jax.eval_shape(
        lambda key: pz.freeze_params(gpt_neox.build_gpt_neox_transformer(config, key)),
        jax.random.key(0),
    )
    assert model.metadata == model_parts.TransformerMetadata(
        common_head_axes={"heads": 2},
        query_only_head_axes={},
        embedding_dim=8,
        projection_dim=4,
        mlp_hidden_dim=16,
        vocab_size=11,
        activation_dtype=jnp.float32,
    )
    block = model.body.sublayers[1]
    assert isinstance(block, model_parts.TransformerBlock)
    branches = block.sublayers[0]
    assert isinstance(branches, pz.nn.BranchAndAddTogether)
    assert isinstance(branches.branches[0], pz.nn.Identity)
    assert isinstance(branches.branches[1].sublayers[1], pz.nn.Attention)
    assert isinstance(branches.branches[2].sublayers[1], model_parts.TransformerFeedForward)
    shapes = {
        p.label: dict(p.value.named_shape)
        for p in pz.select(model).at_instances_of(pz.ParameterValue).get_sequence()
    }
    assert shapes["transformer/block_0/attention/query/Linear.weights"] == {
        "embedding": 8, "heads": 2, "projection": 4,
    }
    assert shapes["transformer/block_0/attention/query/AddBias.bias"] == {"heads": 2, "projection": 4}
    assert shapes["transformer/block_1/mlp/in/AddBias.bias"] == {"neurons": 16}
    assert shapes["transformer/final_norm/shift.bias"] == {"embedding": 8}
    assert shapes["transformer/lm_head.weights"] == {"embedding": 8, "vocabulary": 11}
    logits = jax.eval_shape(
        lambda m: m(pz.nx.wrap(jnp.array([[1, 2, 3]])).tag("batch", "seq")), model
    )
    assert dict(logits.named_shape) == {"batch": 1, "seq": 3, "vocabulary": 11}


def test_unsupported_activation_raises_key_error():
    config = gpt_neox.GPTNeoXTransformerConfig(
        2, 8, 4, 16, 1, 11, "selu", 2, 10_000, 1e-5, jnp.float32, jnp.float32
    )
    with pytest.raises(KeyError):
        gpt_neox.build_gpt_neox_feedforward("mlp", jax.random.key(0), config)


def test_rejects_unsupported_configuration():
    hf = _tiny_neox(use_parallel_residual=False)
    with pytest.raises(
        ValueError,
        match="Conversion of a GPTNeoXForCausalLM does not support these configuration"
        " attributes: {'use_parallel_residual': False}",
    ):
        gpt_neox.gpt_neox_from_huggingface_model(hf)


def test_rejects_other_model_types():
    with pytest.raises(ValueError, match="but got Linear"):
        gpt_neox.gpt_neox_from_huggingface_model(torch.nn.Linear(2, 2))
