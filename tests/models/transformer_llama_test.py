"""Llama conversion from HuggingFace transformers 5.x: numerics and validation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from penzai import pz
from penzai.models.transformer import model_parts
from penzai.models.transformer.variants import llama

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 97
SEQ = 7


@pz.variable_jit
def _call(model, tokens, side):
    """Runs `model` compiled (one compile per model structure and input shape)."""
    return model(tokens, **side)


def _tiny_llama(num_heads: int, num_kv_heads: int, seed: int = 0, **extra):
    """A 2-layer random float32 Llama with perturbed (non-trivial) weights."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        **extra,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model


def _tokens(batch: int = 2, seq: int = SEQ, seed: int = 1) -> np.ndarray:
    return np.random.RandomState(seed).randint(1, VOCAB, size=(batch, seq))


def _hf_logits(model, tokens: np.ndarray, **kwargs) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(tokens), **kwargs).logits.numpy()


def _pz_logits(pz_model, tokens: np.ndarray, **side) -> np.ndarray:
    out = _call(pz_model, pz.nx.wrap(tokens).tag("batch", "seq"), side)
    return np.asarray(out.unwrap("batch", "seq", "vocabulary"))


@pytest.fixture(scope="module")
def gqa_model():
    return _tiny_llama(num_heads=4, num_kv_heads=2, rope_theta=500.0)


@pytest.mark.parametrize(
    "num_heads,num_kv_heads,head_axes",
    [
        (4, 4, {"heads": 4}),  # multi-head
        (4, 1, {"query_heads": 4}),  # multi-query
        (4, 2, {"head_groups": 2, "query_heads": 2}),  # grouped-query
    ],
)
def test_logits_match_huggingface(num_heads, num_kv_heads, head_axes):
    hf = _tiny_llama(num_heads, num_kv_heads)
    model = llama.llama_from_huggingface_model(hf)
    assert isinstance(model, model_parts.TransformerLM)
    query = pz.select(model).at_instances_of(pz.Parameter).where(
        lambda p: p.label == "transformer/block_0/attention/query.weights"
    ).get()
    assert dict(query.value.named_shape) == {**head_axes, "projection": 8, "embedding": 32}
    tokens = _tokens()
    np.testing.assert_allclose(_pz_logits(model, tokens), _hf_logits(hf, tokens), atol=1e-4)


def test_layer_stack_matches_huggingface(gqa_model):
    model = llama.llama_from_huggingface_model(gqa_model, use_layer_stack=True)
    stacks = pz.select(model).at_instances_of(pz.nn.LayerStack).get_sequence()
    assert len(stacks) == 1 and stacks[0].stack_axis_size == 2
    labels = {p.label for p in pz.select(model).at_instances_of(pz.Parameter).get_sequence()}
    assert "transformer/blocks/attention/query.weights" in labels
    assert not any("block_0" in label for label in labels)
    tokens = _tokens()
    np.testing.assert_allclose(_pz_logits(model, tokens), _hf_logits(gqa_model, tokens), atol=1e-4)


def test_left_padding_matches_huggingface_on_real_tokens(gqa_model):
    model = llama.llama_from_huggingface_model(gqa_model)
    tokens = _tokens()
    pad = 3
    tokens[0, :pad] = 0
    mask = np.ones_like(tokens)
    mask[0, :pad] = 0
    positions = np.cumsum(mask, axis=1) - 1
    hf_out = _hf_logits(
        gqa_model,
        tokens,
        attention_mask=torch.tensor(mask),
        position_ids=torch.tensor(np.maximum(positions, 0)),
    )
    pz_positions = np.where(mask == 1, positions, -1)
    ours = _pz_logits(model, tokens, token_positions=pz.nx.wrap(pz_positions).tag("batch", "seq"))
    np.testing.assert_allclose(ours[0, pad:], hf_out[0, pad:], atol=1e-4)
    np.testing.assert_allclose(ours[1], hf_out[1], atol=1e-4)
    # Padding changes nothing for the real tokens: same as the unpadded row.
    unpadded = _pz_logits(model, tokens[:1, pad:])
    np.testing.assert_allclose(ours[0, pad:], unpadded[0], atol=1e-5)


def test_parameters_labels_and_untied_head(gqa_model):
    model = llama.llama_from_huggingface_model(gqa_model)
    params = pz.select(model).at_instances_of(pz.Parameter).get_sequence()
    labels = {p.label for p in params}
    assert "transformer/lm_head.weights" in labels
    assert "transformer/embedder.embeddings" in labels
    assert "transformer/block_1/mlp/gating_linear.weights" in labels
    assert len(params) == len(labels)  # untied: no parameter appears twice
    embed = np.asarray(
        pz.select(model).at_instances_of(pz.Parameter).where(
            lambda p: p.label == "transformer/embedder.embeddings"
        ).get().value.unwrap("vocabulary", "embedding")
    )
    np.testing.assert_array_equal(embed, gqa_model.model.embed_tokens.weight.detach().numpy())


def test_bfloat16_model_with_upcast():
    hf = _tiny_llama(4, 2).to(torch.bfloat16)
    model = llama.llama_from_huggingface_model(hf, upcast_activations_to_float32=True)
    params = pz.select(model).at_instances_of(pz.Parameter).get_sequence()
    assert all(p.value.dtype == jax.numpy.bfloat16 for p in params)
    assert isinstance(model.body.sublayers[1], pz.nn.CastToDType)
    tokens = _tokens()
    ours = _pz_logits(model, tokens)
    assert ours.dtype == np.float32
    hf_out = _hf_logits(hf.to(torch.float32), tokens)
    np.testing.assert_allclose(ours, hf_out, atol=0.1)


def test_explicit_dtype_and_rope_theta_are_accepted():
    # transformers 5.x records the requested dtype in the config ("dtype") even
    # though a model built from the config keeps float32 weights.
    hf = _tiny_llama(4, 2, dtype="bfloat16", rope_theta=1234.0)
    assert hf.config.to_dict()["dtype"] == "bfloat16"
    model = llama.llama_from_huggingface_model(hf)
    assert model.metadata.activation_dtype == np.float32
    ropes = pz.select(model).at_instances_of(pz.nn.ApplyRoPE).get_sequence()
    assert ropes and all(r.max_wavelength == 1234.0 for r in ropes)


def test_rejects_other_model_types():
    hf = transformers.MistralForCausalLM(
        transformers.MistralConfig(
            vocab_size=VOCAB, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=2,
        )
    )
    with pytest.raises(ValueError, match="instance, but got MistralForCausalLM"):
        llama.llama_from_huggingface_model(hf)


def test_rejects_unsupported_rope_scaling_naming_the_attribute():
    hf = _tiny_llama(
        4,
        2,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    )
    with pytest.raises(ValueError) as info:
        llama.llama_from_huggingface_model(hf)
    message = str(info.value)
    assert message.startswith(
        "Conversion of a LlamaForCausalLM does not support these configuration attributes:"
    )
    assert "rope_parameters" in message and "llama3" in message


def test_rejects_other_unsupported_attributes():
    hf = _tiny_llama(4, 2, attention_bias=True, tie_word_embeddings=True)
    with pytest.raises(ValueError, match="attention_bias") as info:
        llama.llama_from_huggingface_model(hf)
    assert "tie_word_embeddings" in str(info.value)


def test_example_script_runs_and_agrees_with_huggingface(capsys):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[2] / "examples" / "llama_tiny_hf.py"
    spec = importlib.util.spec_from_file_location("llama_tiny_hf_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(steps=4)
    assert result["max_diff"] < 1e-4
    assert result["penzai_tokens"] == result["hf_tokens"]
    assert "greedy continuation" in capsys.readouterr().out
