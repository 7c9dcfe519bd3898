"""Shape rules of the built-in node types: `rule(node, input, ctx, path, name) -> output`.

Each rule mirrors what the corresponding `pz.nn` layer does to named axes and
dtypes, raising `ShapeError` (with the field it is about) on a mismatch.
"""

from __future__ import annotations

from typing import Any, Mapping

from penzai.dsl import nodes, semantics
from penzai.dsl import transformer_nodes as tn
from penzai.dsl.errors import Path, ShapeError, format_path
from penzai.dsl.shapes import UNKNOWN, TensorShape, Unknown, is_floating, promote

Value = Any


def _tensor(node: nodes.NodeBase, x: Value) -> TensorShape:
  if isinstance(x, Unknown):
    raise ShapeError("unknown input")
  if not isinstance(x, TensorShape):
    raise ShapeError(f"{node.type} expects a single named array, but its input is a tuple of {len(x)}")
  return x


def _floating(node: nodes.NodeBase, x: TensorShape) -> None:
  if not is_floating(x.dtype):
    raise ShapeError(f"{node.type} needs a floating-point input, but the input dtype is {x.dtype}", kind="dtype")


def _origin(path: Path, *rest: Any) -> str:
  return format_path(path + tuple(rest))


def _require(ctx: Any, node: nodes.NodeBase, x: TensorShape, axes: Mapping[str, Any], path: Path, field: str) -> None:
  """Input `x` must have every axis of `axes` with matching size.

  Problems are recorded and checking continues (as if the axis were right),
  so one document reports every mismatch at once.
  """
  for axis, size in axes.items():
    try:
      if axis not in x.named_shape:
        raise ShapeError(
            f"{node.type} expects input axis {axis!r} (size {size}), but the input has axes {x}",
            kind="axis_missing", field=field,
        )
      ctx.unify(x.named_shape[axis], size, x.origin(axis), _origin(path, field, axis), f"axis {axis!r}", field)
    except ShapeError as e:
      ctx.error(e, path)


def _add(ctx: Any, node: nodes.NodeBase, x: TensorShape, axes: Mapping[str, Any], path: Path, field: str,
         dtype: str | None = None, allow_existing: bool = False) -> TensorShape:
  """Adds output axes; an existing axis is an error unless sizes may broadcast."""
  for axis, size in axes.items():
    if axis in x.named_shape:
      if not allow_existing:
        raise ShapeError(
            f"{node.type} would add axis {axis!r}, but the input already has it ({x})",
            kind="axis_conflict", field=field,
        )
      ctx.unify(x.named_shape[axis], size, x.origin(axis), _origin(path, field, axis), f"axis {axis!r}", field)
  return x.with_axes({a: x.named_shape.get(a, s) for a, s in axes.items()}, _origin(path, field), dtype)


def _names(value: str | list[str]) -> list[str]:
  return [value] if isinstance(value, str) else list(value)


def _broadcast(ctx: Any, node: nodes.NodeBase, a: TensorShape, b: TensorShape, what: str) -> TensorShape:
  """Named broadcasting of two shapes (sizes of shared axes must agree)."""
  out = a
  for axis, size in b.named_shape.items():
    if axis in a.named_shape:
      ctx.unify(a.named_shape[axis], size, a.origin(axis), b.origin(axis), f"axis {axis!r} ({what})")
    else:
      out = out.with_axes({axis: size}, b.origin(axis))
  return out.with_dtype(promote(a.dtype, b.dtype))


# --------------------------------------------------------------------------- containers


def sequential(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  for rel, default, child in node.child_items():
    x = ctx.apply(child, x, path + rel, semantics.child_name(name, default, child))
  return x


def residual(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  y = sequential(node, x, ctx, path, name)
  if isinstance(y, Unknown) or isinstance(x, Unknown):
    return UNKNOWN
  return _broadcast(ctx, node, _tensor(node, y), _tensor(node, x), "residual sum")


def branches(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  outs = [ctx.apply(child, x, path + rel, semantics.child_name(name, default, child))
          for rel, default, child in node.child_items()]
  if any(isinstance(o, Unknown) for o in outs):
    return UNKNOWN
  acc = _tensor(node, outs[0])
  for o in outs[1:]:
    acc = _broadcast(ctx, node, acc, _tensor(node, o), "branch combination")
  return acc


def identity(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  return x


def ref(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  target = ctx.ids.get(node.id)
  if target is None:
    raise ShapeError(f"unknown id {node.id!r}", kind="bad_reference", field="id")
  tnode, tpath, tname = target
  return ctx.apply_quiet(tnode, x, tpath, tname)


def repeat(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  child = node.layer
  seg = child.name if getattr(child, "name", None) is not None else child.type
  if not node.stack:
    for i in range(node.count):
      x = ctx.apply(child, x, path + ("layer",), semantics.join(name, f"{seg}_{i}"))
    return x
  if node.stack_axis in ctx.stack_axes:
    raise ShapeError(f"stack axis {node.stack_axis!r} is already used by an enclosing Repeat", field="stack_axis")
  ctx.stack_axes[node.stack_axis] = node.count
  try:
    y = ctx.apply(child, x, path + ("layer",), semantics.join(name, seg))
  finally:
    del ctx.stack_axes[node.stack_axis]
  if isinstance(x, TensorShape) and isinstance(y, TensorShape):
    if set(x.named_shape) != set(y.named_shape) or x.dtype != y.dtype:
      raise ShapeError(
          f"a stacked Repeat needs its layer to map its input shape to itself, but {x} becomes {y}",
          kind="size_mismatch", field="stack",
      )
    for axis in x.named_shape:
      ctx.unify(y.named_shape[axis], x.named_shape[axis], y.origin(axis), x.origin(axis), f"axis {axis!r}", "stack")
  return y


def attention(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  def sub(field: str, value: Value) -> Value:
    child = getattr(node, field)
    return ctx.apply(child, value, path + (field,), semantics.child_name(name, field, child))

  q = sub("input_to_query", x)
  k = sub("input_to_key", x)
  v = sub("input_to_value", x)
  attn = sub("query_key_to_attn", (q, k))
  return sub("attn_value_to_output", (attn, v))


# --------------------------------------------------------------------------- linear family


def linear(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  _floating(node, x)
  par = {**(node.parallel_axes or {})}
  _require(ctx, node, x, node.input_axes, path, "input_axes")
  _require(ctx, node, x, par, path, "parallel_axes")
  overlap = set(node.input_axes) & set(node.output_axes)
  if overlap and not node.rename_outputs_if_necessary:
    raise ShapeError(
        f"input_axes and output_axes overlap ({sorted(overlap)}) but rename_outputs_if_necessary is false",
        kind="value", field="output_axes",
    )
  if overlap:
    for axis in overlap:
      if axis + "_out" in node.input_axes:
        raise ShapeError(f"cannot rename output {axis!r} to {axis + '_out'!r}: it is also an input axis",
                         kind="value", field="output_axes")
  for axes_field in ("parallel_axes", "parallel_broadcast_axes"):
    extra = getattr(node, axes_field) or {}
    clash = set(extra) & (set(node.input_axes) | set(node.output_axes))
    if axes_field == "parallel_broadcast_axes":
      clash |= set(extra) & set(par)
    if clash:
      raise ShapeError(f"{axes_field} overlap other axis groups: {sorted(clash)}", kind="value", field=axes_field)
  y = x.without(node.input_axes)
  dtype = promote(x.dtype, node.dtype)
  y = _add(ctx, node, y, node.output_axes, path, "output_axes", dtype)
  return _add(ctx, node, y, node.parallel_broadcast_axes or {}, path, "parallel_broadcast_axes", dtype)


def add_bias(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  axes = {**node.biased_axes, **(node.new_output_axes or {})}
  return _add(ctx, node, x, axes, path, "biased_axes", promote(x.dtype, node.dtype), allow_existing=True)


def affine(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  y = linear(node, x, ctx, path, name)
  bias = {**(node.parallel_axes or {}), **(node.parallel_broadcast_axes or {}), **node.output_axes}
  return _add(ctx, node, y, bias, path, "output_axes", allow_existing=True)


def rename_axes(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  old, new = _names(node.old), _names(node.new)
  if len(old) != len(new):
    raise ShapeError(f"`old` has {len(old)} names but `new` has {len(new)}", kind="value", field="new")
  for axis in old:
    if axis not in x.named_shape:
      raise ShapeError(f"RenameAxes expects input axis {axis!r}, but the input has axes {x}",
                       kind="axis_missing", field="old")
  rest = x.without(old)
  for axis in new:
    if axis in rest.named_shape:
      raise ShapeError(f"RenameAxes would create axis {axis!r}, but the input already has it ({x})",
                       kind="axis_conflict", field="new")
  return rest.with_axes({n: x.named_shape[o] for o, n in zip(old, new)}, _origin(path, "new"))


def rescale(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  return x if is_floating(x.dtype) else x.with_dtype("float32")


def named_einsum(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  if isinstance(x, TensorShape) or not isinstance(x, tuple):
    raise ShapeError(f"NamedEinsum expects a tuple of {len(node.input_axes)} arrays, got a single array {x}")
  if len(x) != len(node.input_axes):
    raise ShapeError(f"NamedEinsum expects {len(node.input_axes)} inputs, got {len(x)}", field="input_axes")
  index_size: dict[str, tuple[Any, str]] = {}
  batch: TensorShape | None = None
  dtype = None
  for i, (arr, spec) in enumerate(zip(x, node.input_axes)):
    arr = _tensor(node, arr)
    _floating(node, arr)
    mapping = spec if isinstance(spec, dict) else {a: a for a in spec}
    for axis, idx in mapping.items():
      if axis not in arr.named_shape:
        raise ShapeError(
            f"NamedEinsum input {i} lacks axis {axis!r}; it has axes {arr}", kind="axis_missing", field="input_axes")
      size = arr.named_shape[axis]
      if idx in index_size:
        prev, prev_origin = index_size[idx]
        ctx.unify(size, prev, arr.origin(axis), prev_origin, f"einsum index {idx!r}", "input_axes")
      else:
        index_size[idx] = (size, arr.origin(axis))
    rest = arr.without(mapping)
    if batch is None:
      batch = rest
    else:
      if set(rest.named_shape) != set(batch.named_shape):
        raise ShapeError(
            f"NamedEinsum inputs must share the same other (batch) axes: {batch} vs {rest}",
            kind="axis_missing", field="input_axes")
      for axis in rest.named_shape:
        ctx.unify(rest.named_shape[axis], batch.named_shape[axis], rest.origin(axis), batch.origin(axis),
                  f"batch axis {axis!r}", "input_axes")
    dtype = arr.dtype if dtype is None else promote(dtype, arr.dtype)
  assert batch is not None and dtype is not None
  out_map = node.output_axes if isinstance(node.output_axes, dict) else {a: a for a in node.output_axes}
  for axis, idx in out_map.items():
    if idx not in index_size:
      raise ShapeError(f"output index {idx!r} does not appear in any input", kind="value", field="output_axes")
    if axis in batch.named_shape:
      raise ShapeError(f"output axis {axis!r} clashes with a batch axis", kind="axis_conflict", field="output_axes")
  out = batch.with_dtype(dtype)
  for axis, idx in out_map.items():
    size, origin = index_size[idx]
    out = out.with_axes({axis: size}, origin)
  return out


# --------------------------------------------------------------------------- basic ops


def same_float(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  return x


def softmax(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  for axis in _names(node.axes):
    if axis not in x.named_shape:
      raise ShapeError(f"Softmax over axis {axis!r}, but the input has axes {x}", kind="axis_missing", field="axes")
  if not is_floating(x.dtype):
    return x.with_dtype("float32")
  return x


def cast(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  if isinstance(x, tuple):
    return tuple(cast(node, v, ctx, path, name) for v in x)
  return _tensor(node, x).with_dtype(node.dtype)


def norm(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  _floating(node, x)
  _require(ctx, node, x, node.across_axes, path, "across_axes")
  return x.with_dtype(promote(x.dtype, node.dtype))


def standardize(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  _floating(node, x)
  for axis in _names(node.across):
    if axis not in x.named_shape:
      raise ShapeError(f"{node.type} across axis {axis!r}, but the input has axes {x}",
                       kind="axis_missing", field="across")
  return x


def dropout(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  _floating(node, x)
  for axis in node.share_across_axes:
    if axis not in x.named_shape:
      raise ShapeError(f"Dropout shares its mask across axis {axis!r}, but the input has axes {x}",
                       kind="axis_missing", field="share_across_axes")
  return x


# --------------------------------------------------------------------------- embeddings / positions


def embedding_lookup(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  if not x.dtype.startswith(("int", "uint")):
    raise ShapeError(f"EmbeddingLookup needs integer token indices, but the input dtype is {x.dtype}", kind="dtype")
  return _add(ctx, node, x, node.embedding_axes, path, "embedding_axes", node.dtype)


def embedding_decode(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  _floating(node, x)
  target = ctx.ids.get(node.table)
  if target is None or not isinstance(target[0], nodes.EmbeddingLookup):
    raise ShapeError(f"unknown EmbeddingLookup id {node.table!r}", kind="bad_reference", field="table")
  table = target[0]
  tpath = target[1]
  for axis, size in table.embedding_axes.items():
    if axis not in x.named_shape:
      raise ShapeError(
          f"EmbeddingDecode expects input axis {axis!r} (size {size}, from table {node.table!r}),"
          f" but the input has axes {x}", kind="axis_missing", field="table")
    ctx.unify(x.named_shape[axis], size, x.origin(axis), _origin(tpath, "embedding_axes", axis), f"axis {axis!r}", "table")
  y = x.without(table.embedding_axes)
  return _add(ctx, node, y, {table.vocabulary_axis: table.vocab_size}, tpath, "vocab_size",
              promote(x.dtype, table.dtype))


def _side(ctx: Any, node: nodes.NodeBase, input_name: str, field: str) -> TensorShape:
  side = ctx.side_inputs.get(input_name)
  if side is None:
    raise ShapeError(
        f"{node.type} reads side input {input_name!r}, which is not declared in `side_inputs`"
        f" (declared: {sorted(ctx.side_inputs) or 'none'})", kind="side_input_missing", field=field)
  return side


def _rope_common(node: Any, x: Value, ctx: Any, path: Path, size_needed: int | None) -> TensorShape:
  x = _tensor(node, x)
  _floating(node, x)
  if node.embedding_axis not in x.named_shape:
    raise ShapeError(f"{node.type} rotates axis {node.embedding_axis!r}, but the input has axes {x}",
                     kind="axis_missing", field="embedding_axis")
  pos = _side(ctx, node, node.positions_input_name, "positions_input_name")
  if node.embedding_axis in pos.named_shape:
    raise ShapeError(f"positions side input {node.positions_input_name!r} must not have axis {node.embedding_axis!r}",
                     kind="axis_conflict", field="positions_input_name")
  for axis, size in pos.named_shape.items():
    if axis not in x.named_shape:
      raise ShapeError(
          f"every axis of the positions {pos} must appear in the input, but {axis!r} is missing from {x}",
          kind="axis_missing", field="positions_input_name")
    ctx.unify(x.named_shape[axis], size, x.origin(axis), pos.origin(axis), f"axis {axis!r}", "positions_input_name")
  d = ctx.bindings.resolve(x.named_shape[node.embedding_axis])
  if isinstance(d, int):
    if size_needed is not None and size_needed > d:
      raise ShapeError(f"rope_subset_size {size_needed} exceeds axis {node.embedding_axis!r} size {d}",
                       kind="value", field="rope_subset_size")
    if (size_needed or d) % 2:
      raise ShapeError(f"RoPE needs an even size along {node.embedding_axis!r}, got {size_needed or d}",
                       kind="value", field="embedding_axis")
  return x


def rope(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  return _rope_common(node, x, ctx, path, None)


def rope_subset(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  return _rope_common(node, x, ctx, path, node.rope_subset_size)


def causal_mask(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  q = _side(ctx, node, node.query_positions_input_name, "query_positions_input_name")
  kv = _side(ctx, node, node.kv_positions_input_name, "kv_positions_input_name")
  for side, field in ((q, "query_positions_input_name"), (kv, "kv_positions_input_name")):
    if node.seq_axis not in side.named_shape:
      raise ShapeError(f"positions side input must have axis {node.seq_axis!r}, got {side}",
                       kind="axis_missing", field=field)
  kv_renamed = kv.without([node.seq_axis]).with_axes(
      {node.kv_seq_axis: kv.named_shape[node.seq_axis]}, kv.origin(node.seq_axis))
  mask = _broadcast(ctx, node, q.with_dtype("bool"), kv_renamed.with_dtype("bool"), "query/key positions")
  out = _broadcast(ctx, node, x, mask.with_dtype(x.dtype), "logits and mask")
  return out.with_dtype(x.dtype)


def explicit_mask(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  mask = _side(ctx, node, node.mask_input_name, "mask_input_name")
  return _broadcast(ctx, node, x, mask.with_dtype(x.dtype), "logits and mask").with_dtype(x.dtype)


# --------------------------------------------------------------------------- models


def mlp(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  _floating(node, x)
  fa = node.feature_axis
  _require(ctx, node, x, {fa: node.feature_sizes[0]}, path, "feature_sizes")
  return x.with_axes({fa: node.feature_sizes[-1]}, _origin(path, "feature_sizes"), promote(x.dtype, "float32"))


def transformer(node: Any, x: Value, ctx: Any, path: Path, name: str) -> Value:
  x = _tensor(node, x)
  if not x.dtype.startswith(("int", "uint")):
    raise ShapeError(f"a Transformer needs integer tokens, but the input dtype is {x.dtype}", kind="dtype")
  if "seq" not in x.named_shape:
    raise ShapeError(f"a Transformer needs an input axis 'seq', but the input has axes {x}", kind="axis_missing")
  for axis in ("vocabulary", "embedding"):
    if axis in x.named_shape:
      raise ShapeError(f"the token input must not have axis {axis!r} ({x})", kind="axis_conflict")
  ad = node.activation_dtype
  untied = isinstance(node, tn.TransformerGPTNeoX) or not node.tie_embedder_and_logits
  dtype = promote(ad, "float32") if untied else ad
  if isinstance(node, tn._LlamalikeFields) and isinstance(node.attention_type, list):
    if node.use_layer_stack:
      raise ShapeError("use_layer_stack does not support per-layer attention types", kind="value",
                       field="attention_type")
    if node.num_decoder_blocks % len(node.attention_type):
      raise ShapeError("per-layer attention types must have a length that divides num_decoder_blocks",
                       kind="value", field="attention_type")
  if isinstance(node, tn.TransformerGPTNeoX) and node.rope_subset_size > node.projection_dim:
    raise ShapeError("rope_subset_size exceeds projection_dim", kind="value", field="rope_subset_size")
  if node.projection_dim % 2:
    raise ShapeError("projection_dim must be even for RoPE", kind="value", field="projection_dim")
  return x.with_axes({"vocabulary": node.vocab_size}, _origin(path, "vocab_size"), dtype)


RULES = {
    "Sequential": sequential,
    "NamedGroup": sequential,
    "Residual": residual,
    "BranchAndAddTogether": branches,
    "BranchAndMultiplyTogether": branches,
    "Identity": identity,
    "Ref": ref,
    "Repeat": repeat,
    "Attention": attention,
    "Linear": linear,
    "AddBias": add_bias,
    "Affine": affine,
    "RenameAxes": rename_axes,
    "ConstantRescale": rescale,
    "NamedEinsum": named_einsum,
    "TanhSoftCap": same_float,
    "Elementwise": same_float,
    "Softmax": softmax,
    "CastToDType": cast,
    "LayerNorm": norm,
    "RMSLayerNorm": norm,
    "Standardize": standardize,
    "RMSStandardize": standardize,
    "Dropout": dropout,
    "EmbeddingLookup": embedding_lookup,
    "EmbeddingDecode": embedding_decode,
    "ApplyRoPE": rope,
    "ApplyRoPEToSubset": rope_subset,
    "ApplyCausalAttentionMask": causal_mask,
    "ApplyCausalSlidingWindowAttentionMask": causal_mask,
    "ApplyExplicitAttentionMask": explicit_mask,
    "MLP": mlp,
    "Transformer": transformer,
}
