"""A minimal temperature-sampling loop for key/value-cached transformers.

The loop runs in Python and mutates the cached model's state; it is meant as
a readable reference and for small experiments. The model call and the
sampling of each step are compiled (one compilation for the prompt shape and
one for single-token steps), so no layer runs eagerly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from penzai import pz
from penzai.core import named_axes
from penzai.models.transformer import sampling_mode


@jax.jit
def _prompt_step(
    unbound_model: Any, params: Any, state: Any, prompt: named_axes.NamedArray
) -> tuple[named_axes.NamedArrayBase, Any]:
    """Runs the prompt; returns the logits at each row's last non-pad token."""
    model = pz.bind_variables(unbound_model, params)
    all_logits, new_state = model.stateless_call(state, prompt)
    prompt_len = prompt.named_shape["seq"]
    candidate_indices = pz.nx.nmap(jnp.where)(
        prompt != model.pad_id, pz.nx.arange("seq", prompt_len), -1
    )
    last_index = pz.nx.nmap(jnp.argmax)(candidate_indices.untag("seq"))
    return all_logits[{"seq": last_index}], new_state


@jax.jit
def _token_step(
    unbound_model: Any, params: Any, state: Any, token: named_axes.NamedArrayBase
) -> tuple[named_axes.NamedArrayBase, Any]:
    """Feeds one sampled token per row; returns the next logits."""
    model = pz.bind_variables(unbound_model, params)
    logits, new_state = model.stateless_call(state, token[{"seq": None}])
    return logits.untag("seq").squeeze(0), new_state


@jax.jit
def _sample(
    logits: named_axes.NamedArrayBase, key: jax.Array, temperature: float
) -> named_axes.NamedArrayBase:
    """Draws one token per row from ``softmax(logits / temperature)``."""
    batch_axes = {name: size for name, size in logits.named_shape.items() if name != "vocabulary"}
    keys = pz.nx.random_split(key, batch_axes)
    return pz.nx.nmap(jax.random.categorical)(keys, logits.untag("vocabulary") / temperature)


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

    # Split the model into its static structure, frozen parameters and state,
    # so each step is one compiled call; the state is written back at the end.
    without_state, state_vars = pz.unbind_state_vars(model)
    unbound, params = pz.unbind_params(without_state, freeze=True)
    state = tuple(var.freeze() for var in state_vars)
    try:
        logits, state = _prompt_step(unbound, params, state, prompt)
        # First slot after the prompt: sampled tokens are written from here on.
        start = int(model.cache_end_index.value) + prompt.named_shape["seq"]
        end = start
        count = 0
        while True:
            rng, key = jax.random.split(rng)
            next_token = _sample(logits, key, temperature)
            count += 1
            if end >= model.cache_len or count >= max_sampling_steps:
                break
            logits, state = _token_step(unbound, params, state, next_token)
            end += 1
    finally:
        for var, value in zip(state_vars, state):
            var.update(value)

    sampled = pz.nx.concatenate(
        [
            model.previous_tokens.value[{"seq": pz.slice[start:end]}],
            next_token[{"seq": None}].astype(jnp.int32),
        ],
        "seq",
    )
    return sampled.with_positional_prefix()
