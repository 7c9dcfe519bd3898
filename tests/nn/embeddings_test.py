"""Tests for penzai.nn.embeddings: tables, lookup/decode and rotary embeddings."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz


def _table(key=jax.random.key(0), vocab=7, dims=None):
  return pz.nn.EmbeddingTable.from_config(
      name="embed",
      init_base_rng=key,
      vocab_size=vocab,
      embedding_axes=dims or {"embedding": 4},
  )


def test_table_from_config_structure_and_init():
  table = _table(vocab=50, dims={"embedding": 16})
  assert isinstance(table.embeddings, pz.Parameter)
  assert table.embeddings.label == "embed.embeddings"
  assert table.vocabulary_axis == "vocabulary"
  value = table.embeddings.value
  assert list(value.named_shape.items()) == [("vocabulary", 50), ("embedding", 16)]
  assert value.dtype == jnp.float32
  # Default init: normal with variance 1 / (embedding size).
  std = float(jnp.std(value.unwrap("vocabulary", "embedding")))
  assert 0.15 < std < 0.35
  assert not isinstance(table, pz.nn.Layer)
  assert not callable(table)


def test_table_without_key_has_slot_and_rejects_overlapping_axes():
  table = pz.nn.EmbeddingTable.from_config(
      name="e", init_base_rng=None, vocab_size=3, embedding_axes={"d": 2}
  )
  assert table.embeddings == pz.ParameterSlot("e.embeddings")
  with pytest.raises(ValueError, match="vocabulary_axis"):
    pz.nn.EmbeddingTable.from_config(
        name="e", init_base_rng=None, vocab_size=3,
        embedding_axes={"vocabulary": 2},
    )


def test_lookup_gathers_rows_and_decode_contracts_embedding_axes():
  table = _table(dims={"embedding": 4, "extra": 2})
  tokens = pz.nx.wrap(jnp.array([[0, 3, 6], [2, 2, 1]]), "batch", "seq")
  lookup = pz.nn.EmbeddingLookup(table)
  decode = pz.nn.EmbeddingDecode(table)
  assert lookup.table is decode.table  # tied weights share one table

  embedded = lookup(tokens, unused_side_input=1)
  raw = table.embeddings.value.unwrap("vocabulary", "embedding", "extra")
  assert dict(embedded.named_shape) == {"batch": 2, "seq": 3, "embedding": 4, "extra": 2}
  np.testing.assert_array_equal(
      embedded.unwrap("batch", "seq", "embedding", "extra"),
      raw[np.array([[0, 3, 6], [2, 2, 1]])],
  )

  logits = decode(embedded)
  assert dict(logits.named_shape) == {"batch": 2, "seq": 3, "vocabulary": 7}
  expected = jnp.einsum(
      "bsex,vex->bsv", embedded.unwrap("batch", "seq", "embedding", "extra"), raw
  )
  np.testing.assert_allclose(
      logits.unwrap("batch", "seq", "vocabulary"), expected, rtol=1e-5, atol=1e-6
  )


def _reference_rope(x, positions, max_wavelength, scale_factor=1.0):
  """Standard rotate-half rotary embedding in numpy, x[..., seq, d]."""
  d = x.shape[-1]
  inv_freq = 1.0 / (max_wavelength ** (np.arange(0, d, 2, dtype=np.float64) / d))
  angles = positions[..., None].astype(np.float64) * inv_freq / scale_factor
  emb = np.concatenate([angles, angles], axis=-1)
  rotated_half = np.concatenate([-x[..., d // 2 :], x[..., : d // 2]], axis=-1)
  return x * np.cos(emb) + rotated_half * np.sin(emb)


@pytest.mark.parametrize("scale_factor", [1.0, 4.0])
def test_rope_matches_standard_formula(scale_factor):
  x = np.asarray(jax.random.normal(jax.random.key(2), (2, 5, 8)), np.float32)
  positions = np.array([[0, 1, 2, 3, 4], [7, 8, 9, 100, 1000]])
  layer = pz.nn.ApplyRoPE(
      embedding_axis="embedding",
      max_wavelength=10_000.0,
      positions_input_name="token_positions",
      scale_factor=scale_factor,
  )
  out = layer(
      pz.nx.wrap(x, "batch", "seq", "embedding"),
      token_positions=pz.nx.wrap(positions, "batch", "seq"),
  )
  np.testing.assert_allclose(
      out.unwrap("batch", "seq", "embedding"),
      _reference_rope(x, positions, 10_000.0, scale_factor),
      rtol=1e-4, atol=1e-4,
  )


def test_rope_keeps_input_dtype_and_positions_may_broadcast():
  x = pz.nx.ones({"batch": 2, "heads": 3, "seq": 4, "embedding": 6}, dtype=jnp.bfloat16)
  layer = pz.nn.ApplyRoPE("embedding", 100.0, "pos")
  out = layer(x, pos=pz.nx.arange("seq", 4))
  assert out.dtype == jnp.bfloat16
  assert dict(out.named_shape) == dict(x.named_shape)


def test_rope_errors():
  x = pz.nx.ones({"seq": 3, "embedding": 4})
  layer = pz.nn.ApplyRoPE("embedding", 100.0, "pos")
  with pytest.raises(KeyError, match="pos"):
    layer(x)
  with pytest.raises(ValueError, match="Embedding axis embedding should not already"):
    layer(x, pos=pz.nx.zeros({"seq": 3, "embedding": 4}, dtype=jnp.int32))
  with pytest.raises(ValueError, match="Positions side input must have no positional axes."):
    layer(x, pos=pz.nx.wrap(jnp.arange(3)))
  with pytest.raises(ValueError, match="Every axis of the positions should appear in the main input."):
    layer(x, pos=pz.nx.arange("other", 3))
  with pytest.raises(ValueError, match="scale_factor must be >= 1.0, got 0.5"):
    pz.nn.ApplyRoPE("embedding", 100.0, "pos", scale_factor=0.5)(x, pos=pz.nx.arange("seq", 3))


@hypothesis.given(
    p1=st.integers(0, 500), p2=st.integers(0, 500), shift=st.integers(-200, 200)
)
def test_rope_dot_products_depend_only_on_relative_position(p1, p2, shift):
  hypothesis.assume(min(p1 + shift, p2 + shift) >= 0)
  q = pz.nx.wrap(jnp.array([0.3, -1.0, 2.0, 0.5]), "embedding")
  k = pz.nx.wrap(jnp.array([1.5, 0.2, -0.7, 1.0]), "embedding")
  rope = pz.nn.ApplyRoPE("embedding", 10.0, "pos")

  def score(a, b):
    qa = rope(q, pos=pz.nx.wrap(jnp.array(a)))
    kb = rope(k, pos=pz.nx.wrap(jnp.array(b)))
    return float((qa * kb).untag("embedding").sum().unwrap())

  np.testing.assert_allclose(score(p1, p2), score(p1 + shift, p2 + shift), atol=2e-3)


def test_rope_at_position_zero_is_identity():
  x = pz.nx.wrap(jnp.arange(6.0), "embedding")
  out = pz.nn.ApplyRoPE("embedding", 10.0, "pos")(x, pos=pz.nx.wrap(jnp.array(0)))
  np.testing.assert_allclose(out.unwrap("embedding"), np.arange(6.0))


def test_rope_to_subset_rotates_only_the_prefix():
  x = np.asarray(jax.random.normal(jax.random.key(3), (5, 10)), np.float32)
  positions = np.arange(5) * 3
  layer = pz.nn.ApplyRoPEToSubset(
      embedding_axis="embedding",
      max_wavelength=10_000.0,
      rope_subset_size=4,
      positions_input_name="token_positions",
  )
  out = layer(
      pz.nx.wrap(x, "seq", "embedding"),
      token_positions=pz.nx.wrap(positions, "seq"),
  ).unwrap("seq", "embedding")
  np.testing.assert_allclose(
      out[:, :4], _reference_rope(x[:, :4], positions, 10_000.0), rtol=1e-4, atol=1e-4
  )
  np.testing.assert_array_equal(out[:, 4:], x[:, 4:])
