"""Mistral conversion from HuggingFace transformers 5.x (sliding-window attention)."""

from __future__ import annotations

import numpy as np
import pytest

from penzai import pz
from penzai.models.transformer.variants import llamalike_common, mistral

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 89


@pz.variable_jit
def _call(model, tokens, side):
    """Runs `model` compiled (one compile per model structure and input shape)."""
    return model(tokens, **side)


def _tiny_mistral(sliding_window, seed: int = 0, **extra):
    torch.manual_seed(seed)
    config = transformers.MistralConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=sliding_window,
        attn_implementation="eager",
        **extra,
    )
    model = transformers.MistralForCausalLM(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model


def _tokens(seq: int) -> np.ndarray:
    return np.random.RandomState(3).randint(1, VOCAB, size=(2, seq))


def _compare(hf, model, tokens):
    with torch.no_grad():
        expected = hf(torch.tensor(tokens)).logits.numpy()
    out = _call(model, pz.nx.wrap(tokens).tag("batch", "seq"), {})
    np.testing.assert_allclose(
        np.asarray(out.unwrap("batch", "seq", "vocabulary")), expected, atol=1e-4
    )


@pytest.fixture(scope="module")
def windowed():
    # Window shorter than the sequence, so the window actually matters.
    return _tiny_mistral(sliding_window=3)


def test_sliding_window_logits_match_huggingface(windowed):
    model = mistral.mistral_from_huggingface_model(windowed)
    maskers = pz.select(model).at_instances_of(
        pz.nn.ApplyCausalSlidingWindowAttentionMask
    ).get_sequence()
    assert len(maskers) == 2 and all(m.sliding_window_size == 3 for m in maskers)
    _compare(windowed, model, _tokens(8))


def test_sliding_window_differs_from_global_attention(windowed):
    model = mistral.mistral_from_huggingface_model(windowed)
    tokens = pz.nx.wrap(_tokens(8)).tag("batch", "seq")
    windowed_out = _call(model, tokens, {})
    global_mask = pz.select(model).at_instances_of(
        pz.nn.ApplyCausalSlidingWindowAttentionMask
    ).apply(lambda m: pz.nn.ApplyCausalAttentionMask(masked_out_value=m.masked_out_value))
    global_out = _call(global_mask, tokens, {})
    diff = np.asarray((windowed_out - global_out).unwrap("batch", "seq", "vocabulary"))
    early, late = diff[:, :3], diff[:, 3:]
    np.testing.assert_allclose(early, 0.0, atol=1e-6)
    assert np.abs(late).max() > 1e-3


def test_layer_stack_with_sliding_window(windowed):
    model = mistral.mistral_from_huggingface_model(windowed, use_layer_stack=True)
    assert pz.select(model).at_instances_of(pz.nn.LayerStack).count() == 1
    _compare(windowed, model, _tokens(8))


def test_no_sliding_window_means_global_attention():
    hf = _tiny_mistral(sliding_window=None)
    model = mistral.mistral_from_huggingface_model(hf)
    assert pz.select(model).at_instances_of(pz.nn.ApplyCausalSlidingWindowAttentionMask).count() == 0
    assert pz.select(model).at_instances_of(pz.nn.ApplyCausalAttentionMask).count() == 2
    _compare(hf, model, _tokens(6))


def test_config_uses_sliding_window_attention_type(windowed):
    model = mistral.mistral_from_huggingface_model(windowed)
    assert model.metadata.common_head_axes == {"head_groups": 2}
    assert model.metadata.query_only_head_axes == {"query_heads": 2}
    assert llamalike_common.AttentionTypeSlidingWindowCausal(3) == (
        llamalike_common.AttentionTypeSlidingWindowCausal(window_size=3)
    )


def test_rejects_llama_model():
    hf = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=VOCAB, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=2,
        )
    )
    with pytest.raises(
        ValueError,
        match="mistral_from_huggingface_model should be called with a MistralForCausalLM"
        " instance, but got LlamaForCausalLM.",
    ):
        mistral.mistral_from_huggingface_model(hf)


def test_rejects_non_default_bos_token_and_rope_type():
    hf = _tiny_mistral(sliding_window=4, bos_token_id=5)
    with pytest.raises(ValueError, match="Conversion of a MistralForCausalLM does not support"):
        mistral.mistral_from_huggingface_model(hf)
    hf = _tiny_mistral(
        sliding_window=4, rope_scaling={"rope_type": "dynamic", "factor": 2.0}
    )
    with pytest.raises(ValueError, match="rope_parameters"):
        mistral.mistral_from_huggingface_model(hf)
