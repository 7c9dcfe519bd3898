"""Benchmark: Penzai llama-like transformer vs hand-written jax.numpy and HF.

Usage: ``python bench/transformer.py [--quick]``

Three measurements, each on the same weights:
1. jitted full forward pass (4 blocks, width 256, GQA, batch 4 x 128 tokens):
   Penzai `TransformerLM` vs a hand-written jax.numpy forward (goal <= 1.05x);
2. one KV-cached decode step (batch 4, cache 256): Penzai
   `KVCachingTransformerLM` vs a hand-written jax.numpy step using the same
   cache layout (goal <= 1.5x); reported both for the compiled step alone and
   through `pz.variable_jit` (which adds Python-side variable handling);
3. greedy generation tokens/s: `temperature_sample_pyloop` vs HuggingFace
   ``generate`` on the same model.

Times are the minimum over repeated runs (robust to a shared, noisy CPU).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from penzai import pz
from penzai.models.transformer import sampling_mode, simple_decoding_loop
from penzai.models.transformer.variants import llama

EMBED, HEADS, KV_HEADS, HEAD_DIM, HIDDEN, LAYERS, VOCAB = 256, 8, 4, 32, 1024, 4, 1024
BATCH, SEQ, CACHE = 4, 128, 256
MASK_VALUE = -2.3819763e38


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Minimum wall time of `fn()` (result blocked on) over `repeats` runs."""
    jax.block_until_ready(fn())  # warm-up / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def best_times(fn_a: Callable[[], Any], fn_b: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Minimum wall times of two functions measured alternately (fair under noise)."""
    jax.block_until_ready(fn_a())
    jax.block_until_ready(fn_b())
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - start)
    return min(times_a), min(times_b)


def build_models() -> tuple[Any, Any]:
    """A random HF Llama and its Penzai conversion (shared weights)."""
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=EMBED, intermediate_size=HIDDEN,
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
    )
    hf_model = transformers.LlamaForCausalLM(config).eval()
    return hf_model, llama.llama_from_huggingface_model(hf_model)


def extract_weights(model: Any) -> dict[str, Any]:
    """Penzai parameters as plain arrays in a fixed axis order."""
    values = {
        str(p.label).removeprefix("transformer/"): p.value
        for p in pz.select(model).at_instances_of(pz.Parameter).get_sequence()
    }
    order = {
        "attention/query.weights": ("embedding", "head_groups", "query_heads", "projection"),
        "attention/key.weights": ("embedding", "head_groups", "projection"),
        "attention/value.weights": ("embedding", "head_groups", "projection"),
        "attention/output.weights": ("head_groups", "query_heads", "projection", "embedding"),
        "mlp/gating_linear.weights": ("embedding", "neurons"),
        "mlp/value_linear.weights": ("embedding", "neurons"),
        "mlp/out_linear.weights": ("neurons", "embedding"),
        "pre_attention_norm/scale.weights": ("embedding",),
        "pre_ffw_norm/scale.weights": ("embedding",),
    }
    blocks = [
        {k.split(".")[0]: values[f"block_{i}/{k}"].unwrap(*axes) for k, axes in order.items()}
        for i in range(LAYERS)
    ]
    return {
        "embed": values["embedder.embeddings"].unwrap("vocabulary", "embedding"),
        "final_norm": values["final_norm/scale.weights"].unwrap("embedding"),
        "lm_head": values["lm_head.weights"].unwrap("embedding", "vocabulary"),
        "blocks": blocks,
    }


def _rms(x: jax.Array, scale: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6) * scale


def _rope(x: jax.Array, positions: jax.Array) -> jax.Array:
    """Rotate-half RoPE on the last axis; positions broadcast against x[..., 0]."""
    half = x.shape[-1] // 2
    timescale = 10_000.0 ** (2 * jnp.arange(half) / x.shape[-1])
    theta = positions[..., None].astype(jnp.float32) / timescale
    sin, cos = jnp.sin(theta), jnp.cos(theta)
    a, b = x[..., :half], x[..., half:]
    return jnp.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def _attention_block(x, w, q_pos, k, v, kv_pos):
    """Attention of queries from x against keys/values k, v ([b, g, p, s] layout)."""
    h = _rms(x, w["pre_attention_norm/scale"])
    q = jnp.einsum("bte,eghp->btghp", h, w["attention/query"])
    q = _rope(q, q_pos[:, :, None, None]) * HEAD_DIM**-0.5
    logits = jnp.einsum("btghp,bgps->bghts", q, k)
    mask = (q_pos[:, None, None, :, None] >= kv_pos[:, None, None, None, :]) & (
        kv_pos[:, None, None, None, :] >= 0
    )
    probs = jax.nn.softmax(jnp.where(mask, logits, MASK_VALUE), axis=-1)
    attn = jnp.einsum("bghts,bgps->btghp", probs, v)
    return x + jnp.einsum("btghp,ghpe->bte", attn, w["attention/output"])


def _mlp_block(x, w):
    h = _rms(x, w["pre_ffw_norm/scale"])
    gate = jax.nn.silu(h @ w["mlp/gating_linear"])
    return x + (gate * (h @ w["mlp/value_linear"])) @ w["mlp/out_linear"]


def _keys_values(x, w, positions):
    h = _rms(x, w["pre_attention_norm/scale"])
    k = _rope(jnp.einsum("bte,egp->btgp", h, w["attention/key"]), positions[:, :, None])
    v = jnp.einsum("bte,egp->btgp", h, w["attention/value"])
    return k.transpose(0, 2, 3, 1), v.transpose(0, 2, 3, 1)  # [b, g, p, t]


def handwritten_forward(weights: dict[str, Any], tokens: jax.Array) -> jax.Array:
    """Reference llama forward in plain jax.numpy: [b, t] tokens -> [b, t, vocab]."""
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    x = weights["embed"][tokens]
    for w in weights["blocks"]:
        k, v = _keys_values(x, w, positions)
        x = _attention_block(x, w, positions, k, v, positions)
        x = _mlp_block(x, w)
    return _rms(x, weights["final_norm"]) @ weights["lm_head"]


def handwritten_decode_step(weights, state, tokens):
    """One cached step with penzai's cache layout ([b, groups, proj, seq] per layer)."""
    caches, previous, end = state
    previous = jax.lax.dynamic_update_slice(previous, tokens, (0, end))
    nonpad = previous != 0
    kv_pos = jnp.where(nonpad, jnp.cumsum(nonpad, axis=1, dtype=jnp.int32) - 1, -1)
    q_pos = jax.lax.dynamic_slice(kv_pos, (0, end), (tokens.shape[0], tokens.shape[1]))
    x = weights["embed"][tokens]
    new_caches = []
    for w, (kc, vc) in zip(weights["blocks"], caches):
        k, v = _keys_values(x, w, q_pos)
        kc = jax.lax.dynamic_update_slice(kc, k, (0, 0, 0, end))
        vc = jax.lax.dynamic_update_slice(vc, v, (0, 0, 0, end))
        new_caches.append((kc, vc))
        x = _attention_block(x, w, q_pos, kc, vc, kv_pos)
        x = _mlp_block(x, w)
    logits = _rms(x, weights["final_norm"]) @ weights["lm_head"]
    return logits, (new_caches, previous, end + tokens.shape[1])


def bench_forward(model: Any, weights: dict[str, Any], repeats: int) -> tuple[float, float]:
    tokens = jax.random.randint(jax.random.key(0), (BATCH, SEQ), 1, VOCAB)
    named_tokens = pz.nx.wrap(tokens).tag("batch", "seq")
    unbound, params = pz.unbind_params(model, freeze=True)

    @jax.jit
    def penzai_forward(params, tokens):
        return pz.bind_variables(unbound, params)(tokens).unwrap("batch", "seq", "vocabulary")

    reference = jax.jit(handwritten_forward)
    np.testing.assert_allclose(
        penzai_forward(params, named_tokens), reference(weights, tokens), atol=2e-3, rtol=2e-3
    )
    t_pz, t_ref = best_times(
        lambda: penzai_forward(params, named_tokens), lambda: reference(weights, tokens), repeats
    )
    return t_pz, t_ref


def bench_decode(model: Any, weights: dict[str, Any], repeats: int) -> tuple[float, float, float]:
    prompt = jax.random.randint(jax.random.key(1), (BATCH, 16), 1, VOCAB)
    sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
        model, cache_len=CACHE, batch_axes={"batch": BATCH}
    )
    sampler(pz.nx.wrap(prompt).tag("batch", "seq"))  # fill the cache with a prompt
    without_state, state = pz.unbind_state_vars(sampler, freeze=True)
    unbound, params = pz.unbind_params(without_state, freeze=True)
    step_token = pz.nx.wrap(prompt[:, :1]).tag("batch", "seq")

    @jax.jit
    def penzai_step(params, state, tokens):
        return pz.bind_variables(unbound, params).stateless_call(state, tokens)

    state_values = {v.label: v.value for v in state}
    caches = [
        tuple(
            c.unwrap("batch", "head_groups", "projection", "seq")
            for c in state_values[f"sampler/cache_{i}"]
        )
        for i in range(LAYERS)
    ]
    previous = state_values["sampler/previous_tokens"].unwrap("batch", "seq")
    ref_state = (caches, previous, jnp.asarray(state_values["sampler/cache_end_index"]))
    reference = jax.jit(handwritten_decode_step)
    ours, _ = penzai_step(params, state, step_token)
    theirs, _ = reference(weights, ref_state, prompt[:, :1])
    np.testing.assert_allclose(
        ours.unwrap("batch", "seq", "vocabulary"), theirs, atol=2e-3, rtol=2e-3
    )

    t_pz, t_ref = best_times(
        lambda: penzai_step(params, state, step_token),
        lambda: reference(weights, ref_state, prompt[:, :1]),
        repeats,
    )
    # The stateful path users call: pz.variable_jit updates the variables in place.
    stateful_step = pz.variable_jit(lambda m, t: m(t))
    sampler2 = sampling_mode.KVCachingTransformerLM.from_uncached(
        model, cache_len=CACHE, batch_axes={"batch": BATCH}
    )
    t_var = best_time(lambda: stateful_step(sampler2, step_token), min(repeats, CACHE - 2))
    return t_pz, t_ref, t_var


def bench_generate(hf_model: Any, model: Any, new_tokens: int) -> tuple[float, float]:
    import torch  # pylint: disable=import-outside-toplevel

    prompt = np.random.RandomState(0).randint(1, VOCAB, size=(BATCH, 16)).astype(np.int32)

    def penzai_generate() -> Any:
        sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
            model, cache_len=16 + new_tokens, batch_axes={"batch": BATCH}
        )
        return simple_decoding_loop.temperature_sample_pyloop(
            sampler, pz.nx.wrap(prompt).tag("batch", "seq"), rng=jax.random.key(0),
            temperature=1e-6, max_sampling_steps=new_tokens,
        )

    def hf_generate() -> Any:
        with torch.no_grad():
            return hf_model.generate(
                torch.tensor(prompt), max_new_tokens=new_tokens, do_sample=False,
                pad_token_id=0, attention_mask=torch.ones(prompt.shape, dtype=torch.long),
            )

    t_pz = best_time(penzai_generate, 2)
    t_hf = min(_timed(hf_generate) for _ in range(3))
    total = BATCH * new_tokens
    return total / t_pz, total / t_hf


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeats = 5 if args.quick else 20

    hf_model, model = build_models()
    weights = extract_weights(model)

    t_pz, t_ref = bench_forward(model, weights, repeats)
    print(f"forward  {BATCH}x{SEQ}: penzai {t_pz * 1e3:7.2f} ms  jnp {t_ref * 1e3:7.2f} ms"
          f"  ratio {t_pz / t_ref:.3f}  (goal <= 1.05)")
    t_pz, t_ref, t_var = bench_decode(model, weights, repeats * 5)
    print(f"decode step (batch {BATCH}, cache {CACHE}): penzai {t_pz * 1e3:6.2f} ms"
          f"  jnp {t_ref * 1e3:6.2f} ms  ratio {t_pz / t_ref:.3f}  (goal <= 1.5);"
          f" via pz.variable_jit {t_var * 1e3:6.2f} ms")
    pz_tps, hf_tps = bench_generate(hf_model, model, new_tokens=32 if args.quick else 64)
    print(f"greedy generation: penzai pyloop {pz_tps:8.1f} tok/s  HF generate {hf_tps:8.1f} tok/s")


if __name__ == "__main__":
    main()
