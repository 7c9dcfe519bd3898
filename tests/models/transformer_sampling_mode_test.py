"""KV-cached sampling mode: structure, state handling and parity with the uncached model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.models.transformer import sampling_mode
from penzai.models.transformer.variants import gpt_neox, llama, mistral

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 61


@pz.variable_jit
def _call(model, tokens, side):
    """Runs `model` compiled (one compile per model structure and input shape)."""
    return model(tokens, **side)


def _perturb(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def _llama_config(**extra):
    return dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, **extra,
    )


@pytest.fixture(scope="module")
def gqa_model():
    hf = _perturb(transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **_llama_config(num_key_value_heads=2))))
    return llama.llama_from_huggingface_model(hf)


def _logits(out) -> np.ndarray:
    return np.asarray(out.unwrap("batch", "seq", "vocabulary"))


def _tokens(length: int) -> pz.nx.NamedArray:
    data = np.random.RandomState(2).randint(1, VOCAB, size=(2, length))
    return pz.nx.wrap(data).tag("batch", "seq")


def _check_chunked_matches_uncached(model, chunks=(4, 3, 1), cache_len=12):
    total = sum(chunks)
    tokens = _tokens(total)
    expected = _logits(_call(model, tokens, {}))
    sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
        model, cache_len=cache_len, batch_axes={"batch": 2}
    )
    start = 0
    for size in chunks:
        out = _call(sampler, tokens[{"seq": pz.slice[start:start + size]}], {})
        np.testing.assert_allclose(_logits(out), expected[:, start:start + size], atol=1e-5)
        start += size
    assert int(sampler.cache_end_index.value) == total
    np.testing.assert_array_equal(
        np.asarray(sampler.previous_tokens.value.unwrap("batch", "seq"))[:, :total],
        np.asarray(tokens.unwrap("batch", "seq")),
    )
    return sampler


def test_chunked_calls_reproduce_uncached_logits(gqa_model):
    _check_chunked_matches_uncached(gqa_model)


def test_structure_of_cached_model(gqa_model):
    sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
        gqa_model, cache_len=10, batch_axes={"batch": 2}, pad_id=5, variable_name_prefix="s"
    )
    assert sampler.cache_len == 10 and sampler.pad_id == 5
    assert sampler.batch_axes == {"batch": 2}
    assert sampler.metadata is gqa_model.metadata
    assert pz.select(sampler).at_instances_of(pz.nn.Attention).count() == 0
    caching = pz.select(sampler).at_instances_of(pz.nn.KVCachingAttention).get_sequence()
    assert [c.kv_cache.label for c in caching] == ["s/cache_0", "s/cache_1"]
    key_cache, value_cache = caching[0].kv_cache.value
    assert dict(key_cache.named_shape) == {"batch": 2, "head_groups": 2, "projection": 8, "seq": 10}
    assert dict(value_cache.named_shape) == dict(key_cache.named_shape)
    assert sampler.previous_tokens.label == "s/previous_tokens"
    assert sampler.previous_tokens.value.dtype == jnp.int32
    assert sampler.cache_end_index.label == "s/cache_end_index"
    maskers = pz.select(sampler).at_instances_of(pz.nn.ApplyCausalAttentionMask).get_sequence()
    assert all(m.kv_positions_input_name == "kv_token_positions" for m in maskers)
    # Parameters are shared (same objects) with the uncached model.
    original = {id(p) for p in pz.select(gqa_model).at_instances_of(pz.Parameter).get_sequence()}
    cached = {id(p) for p in pz.select(sampler).at_instances_of(pz.Parameter).get_sequence()}
    assert original == cached


def test_layer_stack_has_single_stacked_cache():
    hf = _perturb(transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **_llama_config(num_key_value_heads=1))))
    model = llama.llama_from_huggingface_model(hf, use_layer_stack=True)
    sampler = _check_chunked_matches_uncached(model, chunks=(6, 1))
    caches = pz.select(sampler).at_instances_of(pz.nn.KVCachingAttention).get_sequence()
    assert len(caches) == 1
    cache = caches[0].kv_cache
    assert cache.label == "sampler/cache_0"
    assert cache.metadata == {"layerstack_axes": {"blocks": pz.nn.LayerStackVarBehavior.PER_LAYER}}
    # Multi-query: no head axis in the cache; the stack axis is present.
    assert dict(cache.value[0].named_shape) == {"batch": 2, "projection": 8, "blocks": 2, "seq": 12}


def test_sliding_window_and_gpt_neox_caches():
    hf = _perturb(transformers.MistralForCausalLM(transformers.MistralConfig(
        **_llama_config(num_key_value_heads=4, sliding_window=3))))
    _check_chunked_matches_uncached(mistral.mistral_from_huggingface_model(hf), chunks=(6, 1))
    neox = _perturb(transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4)))
    _check_chunked_matches_uncached(gpt_neox.gpt_neox_from_huggingface_model(neox), chunks=(6, 1))


def test_left_padding_is_skipped_in_positions(gqa_model):
    tokens = _tokens(6)
    padded = np.asarray(tokens.unwrap("batch", "seq")).copy()
    padded[0, :2] = 0  # row 0 = two pad tokens + a 4-token prompt
    sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
        gqa_model, cache_len=8, batch_axes={"batch": 2}
    )
    out = _logits(_call(sampler, pz.nx.wrap(padded).tag("batch", "seq"), {}))
    unpadded = _logits(_call(gqa_model, pz.nx.wrap(padded[:, 2:]).tag("batch", "seq"), {}))
    np.testing.assert_allclose(out[0, 2:], unpadded[0], atol=1e-5)
    np.testing.assert_allclose(out[1], _logits(_call(gqa_model, tokens, {}))[1], atol=1e-5)


def test_stateless_call_leaves_state_untouched(gqa_model):
    sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
        gqa_model, cache_len=8, batch_axes={"batch": 2}
    )
    unbound, state = pz.unbind_state_vars(sampler, freeze=True)
    no_params, params = pz.unbind_params(unbound, freeze=True)
    out, new_state = jax.jit(
        lambda params, state, tokens: pz.bind_variables(no_params, params).stateless_call(
            state, tokens
        )
    )(params, state, _tokens(3))
    assert dict(out.named_shape) == {"batch": 2, "seq": 3, "vocabulary": VOCAB}
    by_label = {v.label: v for v in new_state}
    assert int(by_label["sampler/cache_end_index"].value) == 3
    assert int(sampler.cache_end_index.value) == 0


def test_rejects_tokens_with_wrong_axes(gqa_model):
    sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
        gqa_model, cache_len=8, batch_axes={"batch": 2}
    )
    with pytest.raises(pz.chk.StructureMismatchError):
        sampler(pz.nx.wrap(np.ones((3, 2), dtype=np.int32)).tag("batch", "seq"))
    with pytest.raises(pz.chk.StructureMismatchError):
        sampler(pz.nx.wrap(np.ones((2, 2, 1), dtype=np.int32)).tag("batch", "seq", "extra"))


def test_rejects_masks_with_non_standard_position_names(gqa_model):
    renamed = pz.select(gqa_model).at_instances_of(pz.nn.ApplyCausalAttentionMask).apply(
        lambda m: pz.nn.ApplyCausalAttentionMask(
            masked_out_value=m.masked_out_value, kv_positions_input_name="my_positions"
        )
    )
    with pytest.raises(ValueError, match="non-standard positions input name"):
        sampling_mode.KVCachingTransformerLM.from_uncached(
            renamed, cache_len=8, batch_axes={"batch": 2}
        )
