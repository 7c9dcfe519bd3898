"""Tests for penzai.nn.attention: mask layers, Attention, KVCachingAttention."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz

EMBED, HEADS, PROJ, SEQ, BATCH = 6, 2, 3, 4, 2
MASK_VALUE = -1e9


def _build_attention(key: jax.Array) -> pz.nn.Attention:
  """A small multi-head causal self-attention layer made of pz.nn parts."""
  kq, kk, kv, ko = jax.random.split(key, 4)
  qkv_axes = dict(input_axes={"embedding": EMBED}, output_axes={"heads": HEADS, "projection": PROJ})
  return pz.nn.Attention(
      input_to_query=pz.nn.Linear.from_config(name="q", init_base_rng=kq, **qkv_axes),
      input_to_key=pz.nn.Sequential([
          pz.nn.Linear.from_config(name="k", init_base_rng=kk, **qkv_axes),
          pz.nn.RenameAxes(old="seq", new="kv_seq"),
      ]),
      input_to_value=pz.nn.Sequential([
          pz.nn.Linear.from_config(name="v", init_base_rng=kv, **qkv_axes),
          pz.nn.RenameAxes(old="seq", new="kv_seq"),
      ]),
      query_key_to_attn=pz.nn.Sequential([
          pz.nn.NamedEinsum(
              (("seq", "heads", "projection"), ("kv_seq", "heads", "projection")),
              ("seq", "heads", "kv_seq"),
          ),
          pz.nn.ApplyCausalAttentionMask(masked_out_value=jnp.array(MASK_VALUE)),
          pz.nn.Softmax("kv_seq"),
      ]),
      attn_value_to_output=pz.nn.Sequential([
          pz.nn.NamedEinsum(
              (("seq", "heads", "kv_seq"), ("kv_seq", "heads", "projection")),
              ("seq", "heads", "projection"),
          ),
          pz.nn.Linear.from_config(
              name="o", init_base_rng=ko,
              input_axes={"heads": HEADS, "projection": PROJ},
              output_axes={"embedding": EMBED},
          ),
      ]),
  )


@functools.cache
def _shared_attention() -> pz.nn.Attention:
  """One attention layer shared by the tests (building it is the slow part)."""
  return _build_attention(jax.random.key(0))


def _weights(linear: pz.nn.Linear, *names: str) -> jax.Array:
  return linear.weights.value.unwrap(*names)


def _reference_attention(attn: pz.nn.Attention, x: jax.Array) -> jax.Array:
  """Hand-written masked softmax attention on x[batch, seq, embedding]."""
  wq = _weights(attn.input_to_query, "embedding", "heads", "projection")
  wk = _weights(attn.input_to_key.sublayers[0], "embedding", "heads", "projection")
  wv = _weights(attn.input_to_value.sublayers[0], "embedding", "heads", "projection")
  wo = _weights(attn.attn_value_to_output.sublayers[1], "heads", "projection", "embedding")
  q = jnp.einsum("bse,ehp->bshp", x, wq)
  k = jnp.einsum("bse,ehp->bshp", x, wk)
  v = jnp.einsum("bse,ehp->bshp", x, wv)
  logits = jnp.einsum("bshp,bthp->bhst", q, k)
  causal = jnp.tril(jnp.ones((x.shape[1], x.shape[1]), bool))
  logits = jnp.where(causal, logits, MASK_VALUE)
  weights = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bhst,bthp->bshp", weights, v)
  return jnp.einsum("bshp,hpe->bse", out, wo)


def _inputs(key: jax.Array):
  x = jax.random.normal(key, (BATCH, SEQ, EMBED))
  positions = pz.nx.wrap(jnp.broadcast_to(jnp.arange(SEQ), (BATCH, SEQ)), "batch", "seq")
  return x, pz.nx.wrap(x, "batch", "seq", "embedding"), positions


def test_attention_matches_hand_written_masked_softmax():
  attn = _shared_attention()
  x, named_x, positions = _inputs(jax.random.key(1))
  out = attn(named_x, token_positions=positions)
  assert dict(out.named_shape) == {"batch": BATCH, "seq": SEQ, "embedding": EMBED}
  np.testing.assert_allclose(
      out.unwrap("batch", "seq", "embedding"), _reference_attention(attn, x),
      rtol=1e-5, atol=1e-5,
  )


def test_attention_calls_sublayers_in_order_with_side_inputs():
  calls = []

  @pz.pytree_dataclass
  class Record(pz.nn.Layer):
    tag: str = dataclasses.field(metadata={"pytree_node": False})

    def __call__(self, value, **side_inputs):
      calls.append((self.tag, side_inputs.get("flag")))
      return value

  attn = pz.nn.Attention(*(Record(t) for t in ["q", "k", "v", "qk", "out"]))
  result = attn("in", flag=7)
  assert [c[0] for c in calls] == ["q", "k", "v", "qk", "out"]
  assert all(c[1] == 7 for c in calls)
  assert result == (("in", "in"), "in")
  assert attn.treescope_color() == "oklch(0.785 0.103 38.5 / 1.0)"


def test_explicit_mask_keeps_true_entries():
  x = pz.nx.wrap(jnp.arange(6.0).reshape(2, 3), "seq", "kv_seq")
  mask = pz.nx.wrap(jnp.array([True, False, True]), "kv_seq")
  layer = pz.nn.ApplyExplicitAttentionMask(mask_input_name="attn_mask", masked_out_value=-5.0)
  out = layer(x, attn_mask=mask)
  np.testing.assert_array_equal(
      out.unwrap("seq", "kv_seq"), [[0.0, -5.0, 2.0], [3.0, -5.0, 5.0]]
  )
  with pytest.raises(KeyError, match="attn_mask"):
    layer(x)


def test_causal_mask_hides_future_and_padding():
  logits = pz.nx.zeros({"seq": 4, "kv_seq": 4})
  positions = pz.nx.wrap(jnp.array([-1, 0, 1, 2]), "seq")  # first token is padding
  out = pz.nn.ApplyCausalAttentionMask(masked_out_value=-1.0)(
      logits, token_positions=positions
  ).unwrap("seq", "kv_seq")
  q = np.array([-1, 0, 1, 2])[:, None]
  kv = np.array([-1, 0, 1, 2])[None, :]
  expected = np.where((q >= kv) & (kv >= 0), 0.0, -1.0)
  np.testing.assert_array_equal(out, expected)


def test_causal_mask_uses_separate_query_and_kv_positions():
  layer = pz.nn.ApplyCausalAttentionMask(
      masked_out_value=-1.0,
      query_positions_input_name="q_pos",
      kv_positions_input_name="kv_pos",
      seq_axis="s",
      kv_seq_axis="t",
  )
  logits = pz.nx.zeros({"s": 1, "t": 5})
  out = layer(
      logits,
      q_pos=pz.nx.wrap(jnp.array([2]), "s"),
      kv_pos=pz.nx.wrap(jnp.arange(5), "s"),
  )
  np.testing.assert_array_equal(out.unwrap("s", "t"), [[0, 0, 0, -1, -1]])
  with pytest.raises(KeyError, match="kv_pos"):
    layer(logits, q_pos=pz.nx.wrap(jnp.array([2]), "s"))


def test_causal_mask_rejects_positions_without_seq_axis():
  layer = pz.nn.ApplyCausalAttentionMask(masked_out_value=-1.0)
  with pytest.raises(ValueError, match="'seq'"):
    layer(pz.nx.zeros({"seq": 2, "kv_seq": 2}), token_positions=pz.nx.wrap(jnp.arange(2), "pos"))


@pytest.mark.parametrize("window", [1, 2, 3])
def test_sliding_window_mask(window):
  n = 5
  logits = pz.nx.zeros({"seq": n, "kv_seq": n})
  positions = pz.nx.wrap(jnp.arange(n), "seq")
  layer = pz.nn.ApplyCausalSlidingWindowAttentionMask(
      masked_out_value=-1.0, sliding_window_size=window
  )
  out = layer(logits, token_positions=positions).unwrap("seq", "kv_seq")
  q, kv = np.arange(n)[:, None], np.arange(n)[None, :]
  expected = np.where((q >= kv) & (q - kv < window), 0.0, -1.0)
  np.testing.assert_array_equal(out, expected)
  # The window size is a pytree child (not static), e.g. for tracing.
  assert window in jax.tree_util.tree_leaves(layer)


def _cached(attn, cache_len, layerstack_axes=None):
  return pz.nn.KVCachingAttention.from_uncached(
      attn,
      sequence_axis="kv_seq",
      cache_len=cache_len,
      cached_axes={"batch": BATCH, "heads": HEADS, "projection": PROJ},
      cache_end_index_key="cache_end_index",
      cache_label="cache",
      layerstack_axes=layerstack_axes,
  )


def _cached_decode(model, named_x, call):
  """Feeds tokens one at a time through a KV-caching model."""
  outputs = []
  for t in range(SEQ):
    out = call(
        model,
        named_x[{"seq": pz.slice[t : t + 1]}],
        token_positions=pz.nx.wrap(jnp.full((BATCH, 1), t), "batch", "seq"),
        kv_token_positions=pz.nx.wrap(jnp.arange(SEQ), "seq"),
        cache_end_index=t,
    )
    outputs.append(out.unwrap("batch", "seq", "embedding"))
  return jnp.concatenate(outputs, axis=1)


def _with_kv_positions(attn):
  return (
      pz.select(attn)
      .at_instances_of(pz.nn.ApplyCausalAttentionMask)
      .apply(
          lambda m: pz.nn.ApplyCausalAttentionMask(
              masked_out_value=m.masked_out_value,
              kv_positions_input_name="kv_token_positions",
          )
      )
  )


def test_kv_caching_from_uncached_structure():
  attn = _shared_attention()
  cached = _cached(attn, cache_len=SEQ)
  assert cached.input_to_query is attn.input_to_query
  assert cached.attn_value_to_output is attn.attn_value_to_output
  assert cached.sequence_axis == "kv_seq"
  assert cached.kv_cache_end_index_key == "cache_end_index"
  assert isinstance(cached.kv_cache, pz.StateVariable)
  assert cached.kv_cache.label == "cache"
  assert cached.kv_cache.metadata == {}
  k, v = cached.kv_cache.value
  assert list(k.named_shape.items()) == [
      ("batch", BATCH), ("heads", HEADS), ("projection", PROJ), ("kv_seq", SEQ)
  ]
  assert not np.any(v.unwrap("batch", "heads", "projection", "kv_seq"))
  stacked = _cached(attn, SEQ, layerstack_axes={"layers": 3})
  assert list(stacked.kv_cache.value[0].named_shape) == [
      "batch", "heads", "projection", "layers", "kv_seq"
  ]
  assert stacked.kv_cache.metadata == {
      "layerstack_axes": {"layers": pz.nn.LayerStackVarBehavior.PER_LAYER}
  }
  auto = pz.nn.KVCachingAttention.from_uncached(
      attn, "kv_seq", 2, {}, "end"
  )
  assert auto.kv_cache.label is not None


def test_kv_caching_token_by_token_matches_full_attention():
  attn = _shared_attention()
  x, named_x, positions = _inputs(jax.random.key(1))
  full = attn(named_x, token_positions=positions).unwrap("batch", "seq", "embedding")
  cached = _cached(_with_kv_positions(attn), cache_len=SEQ)
  decoded = _cached_decode(cached, named_x, lambda m, v, **si: m(v, **si))
  np.testing.assert_allclose(decoded, full, rtol=1e-5, atol=1e-5)
  # The cache now holds every key.
  k_cache, _ = cached.kv_cache.value
  wk = _weights(attn.input_to_key.sublayers[0], "embedding", "heads", "projection")
  np.testing.assert_allclose(
      k_cache.unwrap("batch", "kv_seq", "heads", "projection"),
      jnp.einsum("bse,ehp->bshp", x, wk), rtol=1e-5, atol=1e-5,
  )


def test_kv_caching_under_variable_jit_and_stateless_call_agree_with_eager():
  attn = _with_kv_positions(_shared_attention())
  _, named_x, _ = _inputs(jax.random.key(1))
  eager = _cached(attn, SEQ)
  eager_out = _cached_decode(eager, named_x, lambda m, v, **si: m(v, **si))

  jitted = _cached(attn, SEQ)
  call_jit = pz.variable_jit(lambda m, v, **si: m(v, **si))
  jit_out = _cached_decode(jitted, named_x, call_jit)
  np.testing.assert_allclose(jit_out, eager_out, rtol=1e-5, atol=1e-5)

  unbound, values = pz.unbind_state_vars(_cached(attn, SEQ), freeze=True)
  state = {"values": values}

  def stateless(m, v, **si):
    out, state["values"] = m.stateless_call(state["values"], v, **si)
    return out

  stateless_out = _cached_decode(unbound, named_x, stateless)
  np.testing.assert_allclose(stateless_out, eager_out, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(state["values"]),
                  jax.tree_util.tree_leaves(eager.kv_cache.value)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_kv_caching_requires_end_index():
  cached = _cached(_shared_attention(), SEQ)
  _, named_x, positions = _inputs(jax.random.key(1))
  with pytest.raises(KeyError, match="cache_end_index"):
    cached(named_x, token_positions=positions)


def test_kv_caching_rejects_keys_without_sequence_axis():
  attn = _shared_attention()
  # Keys that were not renamed to the cache's sequence axis are reported.
  broken = _cached(
      pz.nn.Attention(
          input_to_query=attn.input_to_query,
          input_to_key=attn.input_to_key.sublayers[0],
          input_to_value=attn.input_to_value,
          query_key_to_attn=attn.query_key_to_attn,
          attn_value_to_output=attn.attn_value_to_output,
      ),
      SEQ,
  )
  _, named_x, positions = _inputs(jax.random.key(1))
  with pytest.raises(ValueError, match="computed keys must have a named axis 'kv_seq'"):
    broken(named_x, token_positions=positions, cache_end_index=0)
