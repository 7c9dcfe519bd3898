"""model_parts: TransformerLM wrapper, metadata, block types."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.models.transformer import model_parts


@pz.pytree_dataclass
class _RecordPositions(pz.nn.Layer):
    """Test layer: returns the token_positions side input it receives."""

    def __call__(self, tokens, **side_inputs):
        return side_inputs["token_positions"] + 0 * tokens


def _metadata() -> model_parts.TransformerMetadata:
    return model_parts.TransformerMetadata(
        common_head_axes={"heads": 2},
        query_only_head_axes={},
        embedding_dim=8,
        projection_dim=4,
        mlp_hidden_dim=16,
        vocab_size=11,
        activation_dtype=jnp.float32,
    )


def test_metadata_is_a_plain_mutable_dataclass():
    fields = [f.name for f in dataclasses.fields(model_parts.TransformerMetadata)]
    assert fields == [
        "common_head_axes", "query_only_head_axes", "embedding_dim", "projection_dim",
        "mlp_hidden_dim", "vocab_size", "activation_dtype",
    ]
    meta = _metadata()
    meta.vocab_size = 12
    assert meta.vocab_size == 12
    with pytest.raises(TypeError):
        model_parts.TransformerMetadata()  # type: ignore[call-arg]


def test_default_positions_are_arange_broadcast_over_batch():
    lm = model_parts.TransformerLM(body=_RecordPositions(), metadata=_metadata())
    tokens = pz.nx.wrap(jnp.ones((3, 5), dtype=jnp.int32)).tag("batch", "seq")
    out = lm(tokens)
    np.testing.assert_array_equal(
        np.asarray(out.unwrap("batch", "seq")), np.tile(np.arange(5), (3, 1))
    )


def test_explicit_positions_and_side_inputs_are_forwarded():
    seen = {}

    @pz.pytree_dataclass
    class Spy(pz.nn.Layer):
        def __call__(self, tokens, **side_inputs):
            seen.update(side_inputs)
            return tokens

    lm = model_parts.TransformerLM(body=Spy(), metadata=_metadata())
    positions = pz.nx.wrap(jnp.array([[-1, 0, 1]])).tag("batch", "seq")
    tokens = pz.nx.wrap(jnp.array([[0, 4, 5]])).tag("batch", "seq")
    lm(tokens, token_positions=positions, extra="x")
    assert seen["token_positions"] is positions and seen["extra"] == "x"


def test_metadata_is_static_and_body_is_a_child():
    lm = model_parts.TransformerLM(body=_RecordPositions(), metadata=_metadata())
    leaves, treedef = jax.tree_util.tree_flatten(lm)
    assert leaves == []
    assert jax.tree_util.tree_unflatten(treedef, leaves).metadata == _metadata()


def test_block_types_are_sequentials_with_colors():
    block = model_parts.TransformerBlock([pz.nn.Identity()])
    ffw = model_parts.TransformerFeedForward(sublayers=[pz.nn.Identity()])
    assert isinstance(block, pz.nn.Sequential) and isinstance(ffw, pz.nn.Sequential)
    assert [f.name for f in dataclasses.fields(block)] == ["sublayers"]
    assert block.treescope_color() == (
        "oklch(0.785 0.103 186.9 / 1.0)",
        "color-mix(in oklab, oklch(0.785 0.103 186.9 / 1.0) 25%, white)",
    )
    x = pz.nx.wrap(jnp.arange(3.0)).tag("embedding")
    assert (block(x) == x).data_array.all()
    assert pz.select([block, ffw]).at_instances_of(model_parts.TransformerBlock).count() == 1
