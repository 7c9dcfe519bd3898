"""A minimal temperature-sampling loop for key/value-cached transformers.

The loop runs in Python and mutates the cached model's state; it is meant as
a readable reference and for small experiments. Each model call is compiled
with `pz.variable_jit` (one compilation for the prompt shape and one for the
single-token steps), which is much faster than running the layers eagerly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from penzai import pz
from penzai.core import named_axes
from penzai.models.transformer import sampling_mode


@pz.variable_jit
def _call_model(
    model: sampling_mode.KVCachingTransformerLM, tokens: named_axes.NamedArray
) -> named_axes.NamedArray:
    """One cached model call, compiled; state variables are updated in place."""
    return model(tokens)


def temperature_sample_pyloop(
    model: sampling_mode.KVCachingTransformerLM,
    prompt: named_axes.NamedArray,
    rng: jax.Array,
    temperature: float = 1.0,
    max_sampling_steps: int | None = None,
) -> named_axes.NamedArray:
    """Samples a continuation of `prompt` one token at a time.

    Args:
        model: The cached model (its caches and token history are updated).
        prompt: Integer tokens with the model's batch axes and ``"seq"``; each
            row should contain at least one non-padding token. Rows may be
            left-padded with ``model.pad_id`` to a common length.
        rng: PRNG key for sampling.
        temperature: Softmax temperature of the sampling distribution.
        max_sampling_steps: Maximum number of tokens to sample (default: the
            model's cache length).

    Returns:
        The sampled tokens only (prompt excluded): int32 with the batch axes
        and ``"seq"`` of length
        ``min(max_sampling_steps, cache_len - prompt_len + 1)``.
    """
    if max_sampling_steps is None:
        max_sampling_steps = model.cache_len

    all_logits = _call_model(model, prompt)
    prompt_len = prompt.named_shape["seq"]
    # Logits at the last non-padding position of each prompt row.
    candidate_indices = pz.nx.nmap(jnp.where)(
        prompt != model.pad_id, pz.nx.arange("seq", prompt_len), -1
    )
    last_index = pz.nx.nmap(jnp.argmax)(candidate_indices.untag("seq"))
    logits = all_logits[{"seq": last_index}]

    start = model.cache_end_index.value
    count = 0
    while True:
        rng, key = jax.random.split(rng)
        keys = pz.nx.random_split(key, dict(model.batch_axes.items()))
        next_token = pz.nx.nmap(jax.random.categorical)(
            keys, logits.untag("vocabulary") / temperature
        )
        count += 1
        if model.cache_end_index.value >= model.cache_len or count >= max_sampling_steps:
            break
        logits = _call_model(model, next_token[{"seq": None}]).untag("seq").squeeze(0)

    end = model.cache_end_index.value
    sampled = pz.nx.concatenate(
        [
            model.previous_tokens.value[{"seq": pz.slice[start:end]}],
            next_token[{"seq": None}].astype(jnp.int32),
        ],
        "seq",
    )
    return sampled.with_positional_prefix()
