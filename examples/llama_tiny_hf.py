"""Convert a tiny random HuggingFace Llama to Penzai, check it, and sample from it.

Run with ``python examples/llama_tiny_hf.py``. Nothing is downloaded: the
HuggingFace model is built from a small config with random weights.

Steps:
1. build a 2-layer grouped-query-attention ``LlamaForCausalLM``;
2. convert it with ``variants.llama.llama_from_huggingface_model``;
3. check that both models produce the same logits;
4. wrap the Penzai model in a key/value cache and sample a continuation,
   comparing greedy decoding with HuggingFace ``generate``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import torch
import transformers

from penzai import pz
from penzai.models.transformer import sampling_mode, simple_decoding_loop
from penzai.models.transformer.variants import llama


def build_hf_model(seed: int = 0) -> transformers.LlamaForCausalLM:
    """A tiny random Llama (2 layers, width 32, 4 query heads sharing 2 kv heads)."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger weights than the default init, so outputs differ visibly
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    return model


def main(steps: int = 8) -> dict[str, object]:
    """Runs the example; returns the numbers it prints (used by the tests)."""
    hf_model: Any = build_hf_model()  # Any: transformers' stubs confuse mypy on generate()
    pz_model = llama.llama_from_huggingface_model(hf_model)

    prompt = np.array([[5, 17, 3, 42, 8]], dtype=np.int32)
    with torch.no_grad():
        hf_logits = hf_model(torch.tensor(prompt)).logits.numpy()
    pz_logits = pz_model(pz.nx.wrap(prompt).tag("batch", "seq"))
    pz_logits_np = np.asarray(pz_logits.unwrap("batch", "seq", "vocabulary"))
    max_diff = float(np.abs(pz_logits_np - hf_logits).max())
    print(f"max |penzai - huggingface| logit difference: {max_diff:.2e}")

    sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
        pz_model, cache_len=prompt.shape[1] + steps, batch_axes={"batch": 1}
    )
    greedy = simple_decoding_loop.temperature_sample_pyloop(
        sampler,
        pz.nx.wrap(prompt).tag("batch", "seq"),
        rng=jax.random.key(0),
        temperature=1e-6,  # effectively argmax
        max_sampling_steps=steps,
    )
    penzai_tokens = np.asarray(greedy.unwrap("batch", "seq"))[0].tolist()
    with torch.no_grad():
        hf_tokens = hf_model.generate(
            torch.tensor(prompt), max_new_tokens=steps, do_sample=False, pad_token_id=0,
            attention_mask=torch.ones_like(torch.tensor(prompt)),
        )[0, prompt.shape[1]:].tolist()
    print("penzai greedy continuation:     ", penzai_tokens)
    print("huggingface greedy continuation:", hf_tokens)
    return {"max_diff": max_diff, "penzai_tokens": penzai_tokens, "hf_tokens": hf_tokens}


if __name__ == "__main__":
    main()
