"""Recovering a `Transformer` node from a built `TransformerLM` (llamalike or GPT-NeoX)."""

from __future__ import annotations

import functools
from typing import Any


def _fail(message: str, path: str) -> Exception:
  from penzai.dsl.recover import _Unsupported

  return _Unsupported(f"cannot recover a Transformer node: {message}", path)


def _f(value: Any) -> float:
  from penzai.dsl.recover import _float

  return _float(value, "model")


def _act_name(fn: Any) -> str | None:
  import jax

  if isinstance(fn, functools.partial) and fn.func is jax.nn.gelu:
    return "exact" if not fn.keywords.get("approximate", True) else "approx"
  if fn is jax.nn.silu:
    return "silu"
  if fn is jax.nn.relu:
    return "relu"
  return None


def _params(tree: Any) -> list[Any]:
  from penzai import pz

  kinds: tuple[type[Any], ...] = (pz.Parameter, pz.ParameterValue, pz.ParameterSlot)
  return list(pz.select(tree).at_instances_of(kinds).get_sequence())


def transformer_data(rec: Any, layer: Any, path: str) -> tuple[dict[str, Any], str, tuple[str, ...]]:
  """(node data, build name, parameter object ids) for a TransformerLM."""
  from penzai import pz

  nn = pz.nn
  meta = layer.metadata
  body = layer.body
  if type(body) is not nn.Sequential or not body.sublayers or type(body.sublayers[0]) is not nn.EmbeddingLookup:
    raise _fail("body is not Sequential[EmbeddingLookup, ...]", path)
  params = _params(layer)
  for p in params:
    if isinstance(p, pz.ParameterSlot):
      raise _fail(f"parameter {p.label!r} is unbound", path)
  table_label: str = getattr(body.sublayers[0].table.embeddings, "label", "")
  if not table_label.endswith("/embedder.embeddings"):
    raise _fail(f"unexpected embedding label {table_label!r}", path)
  name = table_label[: -len("/embedder.embeddings")]
  pids = tuple(dict.fromkeys(p.label for p in params))
  pdtype = str(body.sublayers[0].table.embeddings.value.dtype)
  import jax.numpy as jnp

  adtype = str(jnp.dtype(meta.activation_dtype))
  subs = list(body.sublayers)
  stacks = [s for s in subs if type(s) is nn.LayerStack]
  blocks = [s for s in subs if type(s).__name__ == "TransformerBlock"]
  proto = stacks[0].stacked_sublayers if stacks else (blocks[0] if blocks else None)
  if proto is None:
    raise _fail("no transformer blocks found", path)
  n_blocks = stacks[0].stack_axis_size if stacks else len(blocks)
  common = dict(
      embedding_dim=meta.embedding_dim, projection_dim=meta.projection_dim, mlp_hidden_dim=meta.mlp_hidden_dim,
      num_decoder_blocks=int(n_blocks), vocab_size=meta.vocab_size, parameter_dtype=pdtype,
      activation_dtype=adtype, use_layer_stack=bool(stacks),
  )
  first = proto.sublayers[0]  # type: ignore[attr-defined]
  if type(first) is nn.BranchAndAddTogether:
    return _gpt_neox(first, meta, common, name, path), name, pids
  return _llamalike(body, proto, stacks, blocks, meta, common, name, path), name, pids


def _find(tree: Any, cls: Any) -> list[Any]:
  from penzai import pz

  return list(pz.select(tree).at_instances_of(cls).get_sequence())


def _gpt_neox(branch: Any, meta: Any, common: dict[str, Any], name: str, path: str) -> dict[str, Any]:
  from penzai import pz

  nn = pz.nn
  ropes = _find(branch, nn.ApplyRoPEToSubset)
  norms = _find(branch, nn.LayerNorm)
  acts = [a for a in _find(branch, nn.Elementwise)]
  if not ropes or not norms or not acts:
    raise _fail("unexpected GPT-NeoX block structure", path)
  act = _act_name(acts[0].fn)
  act_fn = {"exact": "gelu_exact", "approx": "gelu_approx", "silu": "silu", "relu": "relu"}.get(act or "")
  if act_fn is None:
    raise _fail(f"unsupported activation {acts[0].fn!r}", path)
  return {
      "type": "Transformer", "variant": "gpt_neox",
      "num_attention_heads": int(meta.common_head_axes["heads"]),
      **common,
      "activation_fn": act_fn,
      "rope_subset_size": int(ropes[0].rope_subset_size),
      "rope_wavelength": float(ropes[0].max_wavelength),
      "layernorm_epsilon": _f(norms[0].sublayers[0].epsilon),
  }


def _llamalike(body: Any, proto: Any, stacks: list[Any], blocks: list[Any], meta: Any,
               common: dict[str, Any], name: str, path: str) -> dict[str, Any]:
  from penzai import pz

  nn = pz.nn
  heads = {**meta.common_head_axes, **meta.query_only_head_axes}
  if "heads" in heads:
    kv, qm = heads["heads"], 1
  elif "head_groups" in heads:
    kv, qm = heads["head_groups"], heads["query_heads"]
  else:
    kv, qm = 1, heads["query_heads"]
  all_blocks = [proto] if stacks else blocks
  att_types: list[Any] = []
  global_scale = None
  local_wave = None
  rope_wave = None
  for block in all_blocks:
    attn = _find(block, nn.Attention)[0]
    sliding = _find(attn, nn.ApplyCausalSlidingWindowAttentionMask)
    rope = _find(attn.input_to_query, nn.ApplyRoPE)[0]
    if sliding:
      att_types.append({"window_size": int(sliding[0].sliding_window_size)})
      local_wave = float(rope.max_wavelength)
    else:
      att_types.append("global")
      rope_wave = float(rope.max_wavelength)
      if float(rope.scale_factor) != 1.0:
        global_scale = float(rope.scale_factor)
  if rope_wave is None:
    rope_wave = local_wave
  if local_wave == rope_wave:
    local_wave = None
  attention_type: Any = att_types[0] if len(set(map(repr, att_types))) == 1 else _period(att_types)
  attn0 = _find(all_blocks[0], nn.Attention)[0]
  q_rescale = [s for s in attn0.input_to_query.sublayers if type(s) is nn.ConstantRescale]
  scale = _f(q_rescale[0].by) if q_rescale else meta.projection_dim ** -0.5
  query_scaling: Any = "default" if abs(scale - meta.projection_dim ** -0.5) < 1e-7 else scale
  attn_caps = _find(attn0.query_key_to_attn, nn.TanhSoftCap)
  gate = _find(all_blocks[0], nn.NamedGroup)
  act = _act_name(_find(gate[0], nn.Elementwise)[0].fn) if gate else None
  mlp_variant = {"exact": "geglu_exact", "approx": "geglu_approx", "silu": "swiglu"}.get(act or "")
  if mlp_variant is None:
    raise _fail("unsupported gated MLP activation", path)
  res = [s for s in all_blocks[0].sublayers if type(s) is nn.Residual]
  post_attn = len(getattr(res[0].delta, "sublayers", ())) == 3
  post_ffw = len(getattr(res[1].delta, "sublayers", ())) == 3
  norm = _find(all_blocks[0], nn.RMSStandardize)[0]
  tail = list(body.sublayers)
  final_cap = _f(tail[-1].soft_cap) if type(tail[-1]) is nn.TanhSoftCap else None
  tied = any(type(s) is nn.EmbeddingDecode for s in tail)
  return {
      "type": "Transformer", "variant": "llama",
      "num_kv_heads": int(kv), "query_head_multiplier": int(qm),
      **common,
      "mlp_variant": mlp_variant,
      "tie_embedder_and_logits": tied,
      "rope_wavelength": rope_wave,
      "rms_norm_eps": _f(norm.epsilon),
      "attention_type": attention_type,
      "use_post_attn_norm": post_attn,
      "use_post_ffw_norm": post_ffw,
      "final_logit_softcap": final_cap,
      "attn_logits_soft_cap": _f(attn_caps[0].soft_cap) if attn_caps else None,
      "query_scaling_factor": query_scaling,
      "use_qk_norm": bool(_find(attn0.input_to_query, nn.RMSLayerNorm)),
      "global_scale_factor": global_scale,
      "local_rope_wavelength": local_wave,
  }


def _period(items: list[Any]) -> list[Any]:
  """The shortest prefix whose repetition reproduces `items` (length must divide)."""
  n = len(items)
  for p in range(1, n + 1):
    if n % p == 0 and all(repr(items[i]) == repr(items[i % p]) for i in range(n)):
      return items[:p]
  return items
