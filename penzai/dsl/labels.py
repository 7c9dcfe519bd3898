"""Parameter labels and shapes a node creates, computed from the spec alone.

Used for duplicate-label detection and for parameter counts without building.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from penzai.dsl import nodes, transformer_nodes as tn

ParamShapes = dict[str, dict[str, int]]


def _linear(name: str, spec: Any) -> ParamShapes:
  axes = {**(spec.parallel_axes or {}), **(spec.parallel_broadcast_axes or {}),
          **spec.input_axes, **spec.output_axes}
  if set(spec.input_axes) & set(spec.output_axes):
    axes = {**(spec.parallel_axes or {}), **(spec.parallel_broadcast_axes or {}), **spec.input_axes}
    axes.update({(k + "_out" if k in spec.input_axes else k): v for k, v in spec.output_axes.items()})
  return {f"{name}.weights": axes}


def _affine(name: str, spec: Any) -> ParamShapes:
  out = _linear(f"{name}/Linear", spec)
  out[f"{name}/AddBias.bias"] = {
      **(spec.parallel_axes or {}), **(spec.parallel_broadcast_axes or {}), **spec.output_axes
  }
  return out


def _llamalike(name: str, s: Any) -> ParamShapes:
  if s.query_head_multiplier == 1:
    common, qonly = {"heads": s.num_kv_heads}, {}
  elif s.num_kv_heads == 1:
    common, qonly = {}, {"query_heads": s.query_head_multiplier}
  else:
    common, qonly = {"head_groups": s.num_kv_heads}, {"query_heads": s.query_head_multiplier}
  E, P, F, V = s.embedding_dim, s.projection_dim, s.mlp_hidden_dim, s.vocab_size
  stack = {"blocks": s.num_decoder_blocks} if s.use_layer_stack else {}
  out: ParamShapes = {f"{name}/embedder.embeddings": {"vocabulary": V, "embedding": E}}
  prefixes = [f"{name}/blocks"] if s.use_layer_stack else [
      f"{name}/block_{i}" for i in range(s.num_decoder_blocks)
  ]
  for b in prefixes:
    block: ParamShapes = {
        f"{b}/pre_attention_norm/scale.weights": {"embedding": E},
        f"{b}/attention/query.weights": {"embedding": E, **common, **qonly, "projection": P},
        f"{b}/attention/key.weights": {"embedding": E, **common, "projection": P},
        f"{b}/attention/value.weights": {"embedding": E, **common, "projection": P},
        f"{b}/attention/output.weights": {**common, **qonly, "projection": P, "embedding": E},
        f"{b}/pre_ffw_norm/scale.weights": {"embedding": E},
        f"{b}/mlp/gating_linear.weights": {"embedding": E, "neurons": F},
        f"{b}/mlp/value_linear.weights": {"embedding": E, "neurons": F},
        f"{b}/mlp/out_linear.weights": {"neurons": F, "embedding": E},
    }
    if s.use_qk_norm:
      block[f"{b}/attention/query_norm/scale.weights"] = {"projection": P}
      block[f"{b}/attention/key_norm/scale.weights"] = {"projection": P}
    if s.use_post_attn_norm:
      block[f"{b}/post_attention_norm/scale.weights"] = {"embedding": E}
    if s.use_post_ffw_norm:
      block[f"{b}/post_ffw_norm/scale.weights"] = {"embedding": E}
    out.update({k: {**stack, **v} for k, v in block.items()})
  out[f"{name}/final_norm/scale.weights"] = {"embedding": E}
  if not s.tie_embedder_and_logits:
    out[f"{name}/lm_head.weights"] = {"embedding": E, "vocabulary": V}
  return out


def _gpt_neox(name: str, s: Any) -> ParamShapes:
  E, P, F, V, H = s.embedding_dim, s.projection_dim, s.mlp_hidden_dim, s.vocab_size, s.num_attention_heads
  stack = {"blocks": s.num_decoder_blocks} if s.use_layer_stack else {}
  out: ParamShapes = {f"{name}/embedder.embeddings": {"vocabulary": V, "embedding": E}}
  prefixes = [f"{name}/blocks"] if s.use_layer_stack else [
      f"{name}/block_{i}" for i in range(s.num_decoder_blocks)
  ]
  for b in prefixes:
    block: ParamShapes = {}
    for norm in ("pre_attention_norm", "pre_ffw_norm"):
      block[f"{b}/{norm}/scale.weights"] = {"embedding": E}
      block[f"{b}/{norm}/shift.bias"] = {"embedding": E}
    for proj in ("query", "key", "value"):
      block[f"{b}/attention/{proj}/Linear.weights"] = {"embedding": E, "heads": H, "projection": P}
      block[f"{b}/attention/{proj}/AddBias.bias"] = {"heads": H, "projection": P}
    block[f"{b}/attention/output/Linear.weights"] = {"heads": H, "projection": P, "embedding": E}
    block[f"{b}/attention/output/AddBias.bias"] = {"embedding": E}
    block[f"{b}/mlp/in/Linear.weights"] = {"embedding": E, "neurons": F}
    block[f"{b}/mlp/in/AddBias.bias"] = {"neurons": F}
    block[f"{b}/mlp/out/Linear.weights"] = {"neurons": F, "embedding": E}
    block[f"{b}/mlp/out/AddBias.bias"] = {"embedding": E}
    out.update({k: {**stack, **v} for k, v in block.items()})
  out[f"{name}/final_norm/scale.weights"] = {"embedding": E}
  out[f"{name}/final_norm/shift.bias"] = {"embedding": E}
  out[f"{name}/lm_head.weights"] = {"embedding": E, "vocabulary": V}
  return out


def param_shapes(spec: Any, name: str) -> ParamShapes | None:
  """Labels -> named shapes of the parameters a leaf node creates ({} if none).

  Returns None for node types whose labels are unknown (user types without a
  `labels` function); containers return {} (their children are counted).
  """
  if isinstance(spec, nodes.Linear):
    return _linear(name, spec)
  if isinstance(spec, nodes.Affine):
    return _affine(name, spec)
  if isinstance(spec, nodes.AddBias):
    return {f"{name}.bias": {**spec.biased_axes, **(spec.new_output_axes or {})}}
  if isinstance(spec, nodes.LayerNorm):
    return {f"{name}/scale.weights": dict(spec.across_axes), f"{name}/shift.bias": dict(spec.across_axes)}
  if isinstance(spec, nodes.RMSLayerNorm):
    return {f"{name}/scale.weights": dict(spec.across_axes)}
  if isinstance(spec, nodes.EmbeddingLookup):
    return {f"{name}.embeddings": {spec.vocabulary_axis: spec.vocab_size, **spec.embedding_axes}}
  if isinstance(spec, nodes.MLP):
    out: ParamShapes = {}
    fa = spec.feature_axis
    for i, (a, b) in enumerate(zip(spec.feature_sizes[:-1], spec.feature_sizes[1:])):
      out[f"{name}/Affine_{i}/Linear.weights"] = {fa: a, fa + "_out": b}
      out[f"{name}/Affine_{i}/AddBias.bias"] = {fa: b}
    return out
  if isinstance(spec, tn._LlamalikeFields):
    return _llamalike(name, spec)
  if isinstance(spec, tn.TransformerGPTNeoX):
    return _gpt_neox(name, spec)
  from penzai.dsl import registry

  entry = registry.layer_types().get(spec.type)
  if entry is not None and entry.user:
    if entry.labels is None:
      return None
    return {label: {} for label in entry.labels(spec, name)}
  return {}


def count(shapes: Mapping[str, Mapping[str, int]]) -> int:
  """Total number of scalars in a label -> named shape mapping."""
  return sum(math.prod(s.values()) for s in shapes.values())
