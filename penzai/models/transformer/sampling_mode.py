"""Key/value-cached ("sampling mode") transformers for fast decoding.

`KVCachingTransformerLM.from_uncached` turns a `TransformerLM` into a stateful
model that processes a sequence chunk by chunk: every attention layer keeps
the keys and values of all tokens seen so far in a `pz.StateVariable`, so each
new chunk only needs attention against the cache. Calling the cached model on
successive chunks reproduces the logits of the uncached model on the whole
sequence.

Side inputs seen by the body in cached mode: ``"token_positions"``
(positions of the current chunk), ``"kv_token_positions"`` (positions of
every cache slot, ``-1`` for padding / unwritten slots) and
``"cache_end_index"`` (number of filled slots before this chunk).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from penzai import pz
from penzai.core import named_axes
from penzai.models.transformer import model_parts


@pz.pytree_dataclass
class KVCachingTransformerLM(pz.nn.Layer):
    """A transformer language model with key/value caches, for sampling.

    Attributes:
        body: The model body, with `pz.nn.KVCachingAttention` layers.
        cache_end_index: Number of cache slots filled so far.
        previous_tokens: All tokens written so far (batch axes and ``"seq"``
            of length `cache_len`; unwritten slots are zero).
        metadata: Sizes and axis names of the model.
        cache_len: Capacity of the caches along ``"seq"``.
        batch_axes: Batch axes (names and sizes) the caches were built for.
        pad_id: Token id treated as padding (gets position -1).
    """

    body: pz.nn.Layer
    cache_end_index: pz.StateVariable[int]
    previous_tokens: pz.StateVariable[named_axes.NamedArray]
    metadata: model_parts.TransformerMetadata = dataclasses.field(
        metadata={"pytree_node": False}
    )
    cache_len: int = dataclasses.field(metadata={"pytree_node": False})
    batch_axes: dict[str, int] = dataclasses.field(metadata={"pytree_node": False})
    pad_id: int = dataclasses.field(metadata={"pytree_node": False})

    def __call__(  # type: ignore[override]
        self, tokens: named_axes.NamedArray, **extra_side_inputs: dict[Any, Any]
    ) -> named_axes.NamedArray:
        """Processes the next chunk of tokens and updates the caches.

        Args:
            tokens: Integer tokens with exactly the batch axes and ``"seq"``.
            **extra_side_inputs: Extra side inputs forwarded to the body.

        Returns:
            Logits for the chunk (batch axes, ``"seq"``, ``"vocabulary"``).

        Raises:
            pz.chk.StructureMismatchError: If `tokens` has other axes than the
                batch axes plus ``"seq"``.
        """
        expected_shape: dict[Any, Any] = {**self.batch_axes, "seq": pz.chk.var("S")}
        pz.chk.check_structure(tokens, pz.chk.ArraySpec(named_shape=expected_shape))
        chunk_len = tokens.named_shape["seq"]
        start = self.cache_end_index.value
        previous = self.previous_tokens.value
        updated_tokens = pz.nx.nmap(jax.lax.dynamic_update_slice)(
            previous.untag("seq"),
            tokens.astype(previous.dtype).untag("seq"),
            (start,),
        ).tag("seq")

        not_padding = updated_tokens != self.pad_id
        counts = pz.nx.nmap(jnp.cumsum)(not_padding.untag("seq"), dtype=jnp.int32).tag("seq")
        kv_positions = pz.nx.nmap(jnp.where)(not_padding, counts - 1, -1)
        query_positions = pz.nx.nmap(jax.lax.dynamic_slice)(
            kv_positions.untag("seq"), (start,), (chunk_len,)
        ).tag("seq")

        out = self.body(
            tokens,
            token_positions=query_positions,
            kv_token_positions=kv_positions,
            cache_end_index=start,
            **extra_side_inputs,
        )
        self.previous_tokens.value = updated_tokens
        self.cache_end_index.value = start + chunk_len
        return out

    @classmethod
    def from_uncached(
        cls,
        uncached: model_parts.TransformerLM,
        cache_len: int,
        batch_axes: dict[str, int],
        pad_id: int = 0,
        variable_name_prefix: str = "sampler",
    ) -> KVCachingTransformerLM:
        """Builds a cached model sharing the parameters of `uncached`.

        Args:
            uncached: The model to convert.
            cache_len: Number of tokens the caches can hold.
            batch_axes: Batch axes of the inputs (e.g. ``{"batch": 4}``).
            pad_id: Token id treated as padding.
            variable_name_prefix: Prefix of the new state-variable labels.

        Returns:
            The cached model. Parameter objects are shared with `uncached`.

        Raises:
            ValueError: If an attention mask reads key positions from a side
                input other than ``"token_positions"``.
        """
        cached_axes: dict[Any, int] = {
            **batch_axes,
            **uncached.metadata.common_head_axes,
            "projection": uncached.metadata.projection_dim,
        }
        maskers = (pz.nn.ApplyCausalAttentionMask, pz.nn.ApplyCausalSlidingWindowAttentionMask)

        def fix_masker(masker: Any) -> Any:
            if masker.kv_positions_input_name != "token_positions":
                raise ValueError(
                    "Could not automatically convert attention mask layer with"
                    f" non-standard positions input name: {masker}"
                )
            return dataclasses.replace(masker, kv_positions_input_name="kv_token_positions")

        selection = pz.select(uncached.body).at_instances_of(pz.nn.Attention)
        replacements = []
        for ix, (keypath, attention) in enumerate(
            zip(selection.get_keypaths(), selection.get_sequence())
        ):
            fixed = pz.select(attention).at_instances_of(maskers).apply(fix_masker)
            replacements.append(
                pz.nn.KVCachingAttention.from_uncached(
                    fixed,
                    cache_len=cache_len,
                    cached_axes=cached_axes,
                    cache_dtype=uncached.metadata.activation_dtype,
                    sequence_axis="seq",
                    cache_end_index_key="cache_end_index",
                    cache_label=f"{variable_name_prefix}/cache_{ix}",
                    layerstack_axes=pz.nn.layerstack_axes_from_keypath(keypath),
                )
            )
        body = selection.set_sequence(replacements)
        return cls(
            metadata=uncached.metadata,
            cache_len=cache_len,
            batch_axes=batch_axes,
            pad_id=pad_id,
            previous_tokens=pz.StateVariable(
                value=pz.nx.zeros({**batch_axes, "seq": cache_len}, dtype=jnp.int32),  # type: ignore[dict-item]
                label=f"{variable_name_prefix}/previous_tokens",
            ),
            cache_end_index=pz.StateVariable(
                value=0, label=f"{variable_name_prefix}/cache_end_index"
            ),
            body=body,
        )
