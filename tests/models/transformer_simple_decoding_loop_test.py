"""temperature_sample_pyloop: greedy parity with HuggingFace generate, batching, lengths."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from penzai import pz
from penzai.models.transformer import sampling_mode, simple_decoding_loop
from penzai.models.transformer.variants import llama

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 61
GREEDY = 1e-6  # temperature so low that sampling is argmax


@pytest.fixture(scope="module")
def hf_llama():
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,
    )).eval()
    with torch.no_grad():
        for param in hf.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    return hf


@pytest.fixture(scope="module")
def pz_llama(hf_llama):
    return llama.llama_from_huggingface_model(hf_llama)


def _hf_greedy(hf, prompt: list[int], steps: int) -> list[int]:
    with torch.no_grad():
        out = hf.generate(
            torch.tensor([prompt]), max_new_tokens=steps, do_sample=False,
            pad_token_id=0, attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        )
    return out[0, len(prompt):].tolist()


PROMPTS = [[5, 9, 33, 2, 17], [44, 3]]
STEPS = 6


def test_greedy_decoding_matches_huggingface_for_mixed_length_batch(hf_llama, pz_llama):
    expected = [_hf_greedy(hf_llama, p, STEPS) for p in PROMPTS]
    # Precondition for a fair comparison: the pad id is never generated.
    assert all(0 not in row for row in expected)
    width = max(len(p) for p in PROMPTS)
    padded = np.array([[0] * (width - len(p)) + p for p in PROMPTS], dtype=np.int32)
    sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
        pz_llama, cache_len=width + STEPS - 1, batch_axes={"batch": 2}
    )
    result = simple_decoding_loop.temperature_sample_pyloop(
        sampler,
        pz.nx.wrap(padded).tag("batch", "seq"),
        rng=jax.random.key(0),
        temperature=GREEDY,
        max_sampling_steps=STEPS,
    )
    assert dict(result.named_shape) == {"batch": 2, "seq": STEPS}
    assert result.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(result.unwrap("batch", "seq")), np.array(expected))
    # All but the last sampled token were fed back into the cache.
    assert int(sampler.cache_end_index.value) == width + STEPS - 1


def test_output_length_is_limited_by_cache(pz_llama):
    prompt = pz.nx.wrap(np.array([[7, 8, 9]], dtype=np.int32)).tag("batch", "seq")
    sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
        pz_llama, cache_len=5, batch_axes={"batch": 1}
    )
    out = simple_decoding_loop.temperature_sample_pyloop(sampler, prompt, rng=jax.random.key(1))
    # Default max_sampling_steps = cache_len; the cache fills after 2 steps.
    assert dict(out.named_shape) == {"batch": 1, "seq": 5 - 3 + 1}
    assert int(sampler.cache_end_index.value) == 5


def test_sampling_depends_on_rng_and_is_reproducible(pz_llama):
    prompt = pz.nx.wrap(np.array([[7, 8, 9], [1, 2, 3]], dtype=np.int32)).tag("batch", "seq")

    def sample(seed: int) -> np.ndarray:
        sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
            pz_llama, cache_len=12, batch_axes={"batch": 2}
        )
        out = simple_decoding_loop.temperature_sample_pyloop(
            sampler, prompt, rng=jax.random.key(seed), temperature=5.0, max_sampling_steps=8
        )
        return np.asarray(out.unwrap("batch", "seq"))

    first = sample(0)
    np.testing.assert_array_equal(first, sample(0))
    assert not np.array_equal(first, sample(1))
    assert first.min() >= 0 and first.max() < VOCAB
