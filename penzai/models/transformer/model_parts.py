"""Building blocks shared by every transformer variant.

The layer classes here add no behaviour of their own: they are `Sequential`
subclasses that give the blocks of a transformer a recognizable type, so that
users can select them (e.g. ``pz.select(model).at_instances_of(TransformerBlock)``).

Axis-name conventions used by all variants: ``"seq"`` (tokens / queries),
``"embedding"`` (residual stream), ``"projection"`` (per-head q/k/v),
``"heads"`` / ``"query_heads"`` / ``"head_groups"`` (attention heads),
``"kv_seq"`` (key positions of attention logits), ``"neurons"`` (MLP hidden)
and ``"vocabulary"``. The side input ``"token_positions"`` is an integer
NamedArray with a ``"seq"`` axis where ``-1`` marks padding.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from penzai import pz
from penzai.core import named_axes


@dataclasses.dataclass
class TransformerMetadata:
    """Sizes and axis names of a transformer, needed to build caches etc.

    Attributes:
        common_head_axes: Head axes shared by queries, keys and values.
        query_only_head_axes: Head axes only present on queries (MQA / GQA).
        embedding_dim: Size of the residual stream ``"embedding"`` axis.
        projection_dim: Size of the per-head ``"projection"`` axis.
        mlp_hidden_dim: Size of the MLP ``"neurons"`` axis.
        vocab_size: Size of the ``"vocabulary"`` axis.
        activation_dtype: Floating dtype of the activations.
    """

    common_head_axes: dict[str, int]
    query_only_head_axes: dict[str, int]
    embedding_dim: int
    projection_dim: int
    mlp_hidden_dim: int
    vocab_size: int
    activation_dtype: jax.typing.DTypeLike


@pz.pytree_dataclass(has_implicitly_inherited_fields=True)
class TransformerFeedForward(pz.nn.Sequential):
    """The feed-forward (MLP) part of a transformer block."""


@pz.pytree_dataclass(has_implicitly_inherited_fields=True)
class TransformerBlock(pz.nn.Sequential):
    """One transformer block: attention and feed-forward residual updates."""

    def treescope_color(self) -> tuple[str, str]:
        """Fixed teal color so blocks stand out in treescope renderings."""
        accent = "oklch(0.785 0.103 186.9 / 1.0)"
        return accent, f"color-mix(in oklab, {accent} 25%, white)"


@pz.pytree_dataclass
class TransformerLM(pz.nn.Layer):
    """A decoder-only language model mapping token ids to next-token logits.

    Attributes:
        body: The layers of the model; called with the tokens and a
            ``token_positions`` side input.
        metadata: Sizes and axis names of the model.
    """

    body: pz.nn.Layer
    metadata: TransformerMetadata = dataclasses.field(metadata={"pytree_node": False})

    def __call__(  # type: ignore[override]
        self,
        tokens: named_axes.NamedArray,
        *,
        token_positions: named_axes.NamedArray | None = None,
        **side_inputs: Any,
    ) -> named_axes.NamedArray:
        """Computes unnormalized logits for every position.

        Args:
            tokens: Integer token ids with a ``"seq"`` axis (plus batch axes).
            token_positions: Position of each token (``-1`` = padding).
                Defaults to ``0 .. seq_len - 1`` broadcast over batch axes.
            **side_inputs: Extra side inputs forwarded to the body.

        Returns:
            Logits with the batch axes, ``"seq"`` and ``"vocabulary"``.
        """
        if token_positions is None:
            token_positions = pz.nx.arange("seq", tokens.named_shape["seq"])
        return self.body(tokens, token_positions=token_positions, **side_inputs)
