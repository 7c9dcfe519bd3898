"""The builder: compiles a checked spec into an ordinary `pz.nn` layer tree.

Each leaf node calls its layer's `from_config(name, init_base_rng, ...)` (or
constructor), so parameter labels are `{build name}.weights` etc. exactly as
if the model had been written by hand.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from penzai.dsl import nodes, registry, semantics
from penzai.dsl import transformer_nodes as tn



class BuildContext:
  """State of one build: layers built for each `id` so `Ref`s can reuse them."""

  def __init__(self) -> None:
    from penzai import pz

    self.pz = pz
    self.nn = pz.nn
    self.ids: dict[str, Any] = {}
    self.builders: dict[str, Callable[..., Any]] = {
        k: v.builder for k, v in registry.layer_types().items() if v.builder is not None
    }

  def build(self, node: nodes.NodeBase, name: str, rng: Any) -> Any:
    """Builds one node (and records it under its `id`)."""
    layer = self.builders[node.type](node, name, rng, self)
    node_id = node.__dict__.get("id")
    if node_id:
      self.ids[node_id] = layer
    return layer


def _children(node: Any, name: str, rng: Any, ctx: BuildContext) -> list[Any]:
  items = node.__dict__.get("layers")
  if items is None:
    items = node.branches
  prefix = name + "/" if name else ""
  build = ctx.build
  out = []
  for i, child in enumerate(items):
    own = child.__dict__.get("name")
    if own is None:
      out.append(build(child, f"{prefix}{child.type}_{i}", rng))
    else:
      out.append(build(child, prefix + own if own else name, rng))
  return out


def _field(node: Any, field: str, name: str, rng: Any, ctx: BuildContext) -> Any:
  child = getattr(node, field)
  return ctx.build(child, semantics.child_name(name, field, child), rng)


_init = registry.initializer


@functools.cache
def _dtype(name: str) -> Any:
  import jax.numpy as jnp

  return jnp.dtype(name)


def _b_sequential(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.Sequential(_children(node, name, rng, ctx))


def _b_named_group(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  group = node.name if node.name else (name.rsplit("/", 1)[-1] or "NamedGroup")
  return pz.nn.NamedGroup(group, _children(node, name, rng, ctx))


def _b_residual(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  layers = _children(node, name, rng, ctx)
  return pz.nn.Residual(layers[0] if len(layers) == 1 else pz.nn.Sequential(layers))


def _b_add(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.BranchAndAddTogether(_children(node, name, rng, ctx))


def _b_mul(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.BranchAndMultiplyTogether(_children(node, name, rng, ctx))


def _b_identity(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.Identity()


def _b_ref(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  return ctx.ids[node.id]


def _b_repeat(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  child = node.layer
  seg = child.name if getattr(child, "name", None) is not None else child.type
  if not node.stack:
    return pz.nn.Sequential(
        [ctx.build(child, semantics.join(name, f"{seg}_{i}"), rng) for i in range(node.count)]
    )

  def builder(name: str, init_base_rng: Any) -> Any:
    sub = BuildContext()
    sub.ids = dict(ctx.ids)
    return sub.build(child, name, init_base_rng)

  return pz.nn.LayerStack.from_sublayer_builder(
      builder=builder,
      stack_axis=node.stack_axis,
      stack_axis_size=node.count,
      init_base_rng=rng,
      builder_kwargs=dict(name=semantics.join(name, seg)),
  )


def _b_attention(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  fields = ("input_to_query", "input_to_key", "input_to_value", "query_key_to_attn", "attn_value_to_output")
  return pz.nn.Attention(*[_field(node, f, name, rng, ctx) for f in fields])


def _b_linear(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.Linear.from_config(
      name=name, init_base_rng=rng, input_axes=node.input_axes, output_axes=node.output_axes,
      parallel_axes=node.parallel_axes, parallel_broadcast_axes=node.parallel_broadcast_axes,
      initializer=_init(node.initializer), dtype=_dtype(node.dtype),
      rename_outputs_if_necessary=node.rename_outputs_if_necessary,
  )


def _b_add_bias(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.AddBias.from_config(
      name=name, init_base_rng=rng, biased_axes=node.biased_axes,
      new_output_axes=node.new_output_axes, initializer=_init(node.initializer), dtype=_dtype(node.dtype),
  )


def _b_affine(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.Affine.from_config(
      name=name, init_base_rng=rng, input_axes=node.input_axes, output_axes=node.output_axes,
      parallel_axes=node.parallel_axes, parallel_broadcast_axes=node.parallel_broadcast_axes,
      linear_initializer=_init(node.linear_initializer), bias_initializer=_init(node.bias_initializer),
      dtype=_dtype(node.dtype), rename_outputs_if_necessary=node.rename_outputs_if_necessary,
  )


def _names(value: str | list[str]) -> str | tuple[str, ...]:
  return value if isinstance(value, str) else tuple(value)


def _b_rename(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.RenameAxes(old=_names(node.old), new=_names(node.new))


def _b_rescale(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.ConstantRescale(by=node.by)


def _b_einsum(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  def conv(spec: Any) -> Any:
    return dict(spec) if isinstance(spec, dict) else tuple(spec)

  return pz.nn.NamedEinsum(tuple(conv(s) for s in node.input_axes), conv(node.output_axes))


def _b_softcap(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.TanhSoftCap(soft_cap=node.soft_cap)


def _b_elementwise(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.Elementwise(registry.activation(node.fn))


def _b_softmax(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.Softmax(_names(node.axes))


def _b_cast(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.CastToDType(_dtype(node.dtype))


def _b_layer_norm(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.LayerNorm.from_config(
      name=name, init_base_rng=rng, across_axes=node.across_axes, epsilon=node.epsilon,
      dtype=_dtype(node.dtype),
  )


def _b_rms_layer_norm(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.RMSLayerNorm.from_config(
      name=name, init_base_rng=rng, across_axes=node.across_axes, epsilon=node.epsilon,
      dtype=_dtype(node.dtype),
  )


def _b_standardize(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.Standardize(across=_names(node.across), epsilon=node.epsilon)


def _b_rms_standardize(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.RMSStandardize(across=_names(node.across), epsilon=node.epsilon)


def _b_dropout(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  cls = pz.nn.StochasticDropout if node.enabled else pz.nn.DisabledDropout
  return cls(
      drop_rate=node.drop_rate, share_across_axes=tuple(node.share_across_axes),
      random_stream_input_name=node.random_stream_input_name,
  )


def _b_embedding_lookup(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  table = pz.nn.EmbeddingTable.from_config(
      name=name, init_base_rng=rng, vocab_size=node.vocab_size, embedding_axes=node.embedding_axes,
      vocabulary_axis=node.vocabulary_axis, initializer=_init(node.initializer), dtype=_dtype(node.dtype),
  )
  return pz.nn.EmbeddingLookup(table)


def _b_embedding_decode(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.EmbeddingDecode(ctx.ids[node.table].table)


def _b_rope(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.ApplyRoPE(
      embedding_axis=node.embedding_axis, max_wavelength=node.max_wavelength,
      positions_input_name=node.positions_input_name, scale_factor=node.scale_factor,
  )


def _b_rope_subset(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.ApplyRoPEToSubset(
      embedding_axis=node.embedding_axis, max_wavelength=node.max_wavelength,
      rope_subset_size=node.rope_subset_size, positions_input_name=node.positions_input_name,
      scale_factor=node.scale_factor,
  )


def _mask_kwargs(node: Any) -> dict[str, Any]:
  return dict(
      masked_out_value=node.masked_out_value,
      query_positions_input_name=node.query_positions_input_name,
      kv_positions_input_name=node.kv_positions_input_name,
      seq_axis=node.seq_axis, kv_seq_axis=node.kv_seq_axis,
  )


def _b_causal(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.ApplyCausalAttentionMask(**_mask_kwargs(node))


def _b_sliding(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.ApplyCausalSlidingWindowAttentionMask(
      sliding_window_size=node.sliding_window_size, **_mask_kwargs(node)
  )


def _b_explicit(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  pz = ctx.pz

  return pz.nn.ApplyExplicitAttentionMask(
      mask_input_name=node.mask_input_name, masked_out_value=node.masked_out_value
  )


def _b_mlp(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  from penzai.models import simple_mlp

  return simple_mlp.MLP.from_config(
      init_base_rng=rng, feature_sizes=list(node.feature_sizes), name=name,
      activation_fn=registry.activation(node.activation_fn), feature_axis=node.feature_axis,
  )


def llamalike_config(node: Any) -> Any:
  """The `LlamalikeTransformerConfig` a llama/mistral/gemma Transformer node describes."""
  from penzai.models.transformer.variants import llamalike_common as lc

  def att(a: Any) -> Any:
    if a == "global":
      return lc.AttentionTypeGlobalCausal()
    return lc.AttentionTypeSlidingWindowCausal(a.window_size)

  attention_type = (
      tuple(att(a) for a in node.attention_type) if isinstance(node.attention_type, list) else att(node.attention_type)
  )
  return lc.LlamalikeTransformerConfig(
      num_kv_heads=node.num_kv_heads, query_head_multiplier=node.query_head_multiplier,
      embedding_dim=node.embedding_dim, projection_dim=node.projection_dim,
      mlp_hidden_dim=node.mlp_hidden_dim, num_decoder_blocks=node.num_decoder_blocks,
      vocab_size=node.vocab_size, mlp_variant=node.mlp_variant,
      tie_embedder_and_logits=node.tie_embedder_and_logits, rope_wavelength=node.rope_wavelength,
      rms_norm_eps=node.rms_norm_eps, attention_type=attention_type,
      use_post_attn_norm=node.use_post_attn_norm, use_post_ffw_norm=node.use_post_ffw_norm,
      final_logit_softcap=node.final_logit_softcap, attn_logits_soft_cap=node.attn_logits_soft_cap,
      query_scaling_factor=node.query_scaling_factor, parameter_dtype=_dtype(node.parameter_dtype),
      activation_dtype=_dtype(node.activation_dtype), use_layer_stack=node.use_layer_stack,
      use_qk_norm=node.use_qk_norm, global_scale_factor=node.global_scale_factor,
      local_rope_wavelength=node.local_rope_wavelength,
  )


def gpt_neox_config(node: Any) -> Any:
  """The `GPTNeoXTransformerConfig` a gpt_neox Transformer node describes."""
  from penzai.models.transformer.variants import gpt_neox

  return gpt_neox.GPTNeoXTransformerConfig(
      num_attention_heads=node.num_attention_heads, embedding_dim=node.embedding_dim,
      projection_dim=node.projection_dim, mlp_hidden_dim=node.mlp_hidden_dim,
      num_decoder_blocks=node.num_decoder_blocks, vocab_size=node.vocab_size,
      activation_fn=node.activation_fn, rope_subset_size=node.rope_subset_size,
      rope_wavelength=node.rope_wavelength, layernorm_epsilon=node.layernorm_epsilon,
      parameter_dtype=_dtype(node.parameter_dtype), activation_dtype=_dtype(node.activation_dtype),
      use_layer_stack=node.use_layer_stack,
  )


def _b_transformer(node: Any, name: str, rng: Any, ctx: BuildContext) -> Any:
  if isinstance(node, tn.TransformerGPTNeoX):
    from penzai.models.transformer.variants import gpt_neox

    return gpt_neox.build_gpt_neox_transformer(gpt_neox_config(node), init_base_rng=rng, name=name)
  from penzai.models.transformer.variants import llamalike_common as lc

  return lc.build_llamalike_transformer(llamalike_config(node), init_base_rng=rng, name=name)


BUILDERS = {
    "Sequential": _b_sequential,
    "NamedGroup": _b_named_group,
    "Residual": _b_residual,
    "BranchAndAddTogether": _b_add,
    "BranchAndMultiplyTogether": _b_mul,
    "Identity": _b_identity,
    "Ref": _b_ref,
    "Repeat": _b_repeat,
    "Attention": _b_attention,
    "Linear": _b_linear,
    "AddBias": _b_add_bias,
    "Affine": _b_affine,
    "RenameAxes": _b_rename,
    "ConstantRescale": _b_rescale,
    "NamedEinsum": _b_einsum,
    "TanhSoftCap": _b_softcap,
    "Elementwise": _b_elementwise,
    "Softmax": _b_softmax,
    "CastToDType": _b_cast,
    "LayerNorm": _b_layer_norm,
    "RMSLayerNorm": _b_rms_layer_norm,
    "Standardize": _b_standardize,
    "RMSStandardize": _b_rms_standardize,
    "Dropout": _b_dropout,
    "EmbeddingLookup": _b_embedding_lookup,
    "EmbeddingDecode": _b_embedding_decode,
    "ApplyRoPE": _b_rope,
    "ApplyRoPEToSubset": _b_rope_subset,
    "ApplyCausalAttentionMask": _b_causal,
    "ApplyCausalSlidingWindowAttentionMask": _b_sliding,
    "ApplyExplicitAttentionMask": _b_explicit,
    "MLP": _b_mlp,
    "Transformer": _b_transformer,
}


def build_unchecked(spec: Any, init_base_rng: Any = None, name: str | None = None) -> Any:
  """Builds without running the checker (the spec must already be valid)."""
  from penzai.dsl import builtins  # noqa: F401

  ctx = BuildContext()
  return ctx.build(spec.model, semantics.root_name(spec, name), init_base_rng)


_CHECKED: dict[tuple[int, str | None], Any] = {}


def build(spec: Any, init_base_rng: Any = None, name: str | None = None) -> Any:
  """Compiles a spec into an ordinary `pz.nn` layer tree.

  The spec is checked first (semantic rules and static shapes; the result is
  cached per spec object), so nothing is allocated for an invalid spec.

  Args:
    spec: a `ModelSpec`.
    init_base_rng: a JAX PRNG key to initialize parameters, or None for
      unbound `pz.ParameterSlot`s (to be filled by `pz.bind_variables`).
    name: parameter-name prefix (default: the document's `name`).

  Returns:
    The root layer.

  Raises:
    SpecError: if the spec is invalid.
  """
  from penzai.dsl import checker as check_mod

  key = (id(spec), name)
  hit = _CHECKED.get(key)
  if hit is None or hit is not spec:
    check_mod.static_check(spec, name)
    if len(_CHECKED) > 256:
      _CHECKED.pop(next(iter(_CHECKED)))
    _CHECKED[key] = spec
  return build_unchecked(spec, init_base_rng, name)


