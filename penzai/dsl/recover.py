"""`spec_of`: recovering a spec from a `pz.nn` layer tree.

Works on any tree of supported layers — built by `dsl.build`, by hand with
`from_config`, or edited with `pz.select` — so an edited model can be saved as
YAML and rebuilt with the same structure and parameter labels. Parameter
*values* and initializers are not part of a spec; shapes and dtypes are read
from the parameters (which must be bound, or `jax.eval_shape` results).

Node names are chosen from the parameter labels: each node that owns
parameters gets the `name` that reproduces its labels. Layer objects that
appear twice (or distinct layers holding the same `Parameter` objects) become
an `id` plus `Ref`s; a shared embedding table becomes `EmbeddingDecode.table`.
"""

from __future__ import annotations

import dataclasses
import functools

import posixpath
from typing import Any

from penzai.dsl import registry
from penzai.dsl.errors import SpecError, SpecIssue


class _Unsupported(Exception):
  def __init__(self, message: str, path: str):
    super().__init__(message)
    self.message = message
    self.path = path


@dataclasses.dataclass
class _Draft:
  """A node under construction: its data, child drafts and naming facts."""

  data: dict[str, Any]
  children: list[tuple[tuple[Any, ...], "_Draft"]] = dataclasses.field(default_factory=list)
  leaf_name: str | None = None  # build name implied by the node's own labels
  prefix: str | None = None  # for containers: common label prefix of descendants
  param_ids: tuple[str, ...] = ()
  first_input: dict[str, Any] | None = None  # inferred input contract of this node
  positions: tuple[str, ...] = ()  # side inputs of token positions read below


def _dirname(name: str) -> str:
  return posixpath.dirname(name)


def _common(names: list[str]) -> str:
  if not names:
    return ""
  parts = [n.split("/") if n else [] for n in names]
  out: list[str] = []
  for segs in zip(*parts):
    if all(s == segs[0] for s in segs):
      out.append(segs[0])
    else:
      break
  return "/".join(out)


class _Recoverer:
  def __init__(self) -> None:
    from penzai import pz

    self.pz = pz
    self.seen: dict[Any, _Draft] = {}
    self.by_object: dict[int, _Draft] = {}
    self.tables: dict[str, _Draft] = {}
    self.next_id = 0
    self.keepalive: list[Any] = []

  # -- parameters ------------------------------------------------------------

  def _param(self, param: Any, path: str, suffix: str, drop: tuple[str, ...]) -> tuple[str, dict[str, int], str, str]:
    """(build name, named shape, dtype, identity key) of a parameter with label `{name}{suffix}`.

    Parameters are identified by label (unique in a valid model), so frozen
    copies of one shared parameter are still recognized as shared.
    """
    pz = self.pz
    label = getattr(param, "label", None)
    if isinstance(param, pz.ParameterSlot):
      raise _Unsupported(
          f"parameter {label!r} is an unbound ParameterSlot; spec_of needs parameter shapes (bind the"
          " parameters, or build with a key / under jax.eval_shape)", path)
    if not isinstance(label, str) or not label.endswith(suffix):
      raise _Unsupported(f"parameter label {label!r} does not end with {suffix!r} as this layer type requires", path)
    value = param.value
    shape = {k: int(v) for k, v in value.named_shape.items() if k not in drop}
    return label[: -len(suffix)], shape, str(value.dtype), label

  def _new_id(self, draft: _Draft) -> str:
    if "id" not in draft.data:
      self.next_id += 1
      draft.data["id"] = f"shared_{self.next_id}"
    return draft.data["id"]

  # -- conversion ------------------------------------------------------------

  def convert(self, layer: Any, path: str, drop: tuple[str, ...]) -> _Draft:
    draft = self.by_object.get(id(layer))
    if draft is not None and draft.param_ids:
      return _Draft({"type": "Ref", "id": self._new_id(draft)}, param_ids=draft.param_ids,
                    first_input=draft.first_input, positions=draft.positions)
    draft = self._convert(layer, path, drop)
    self.keepalive.append(layer)
    self.by_object[id(layer)] = draft
    if draft.param_ids and draft.data["type"] != "Ref":
      key = (draft.data["type"], draft.param_ids)
      earlier = self.seen.get(key)
      if earlier is not None and earlier is not draft:
        return _Draft({"type": "Ref", "id": self._new_id(earlier)}, param_ids=draft.param_ids,
                      first_input=draft.first_input, positions=draft.positions)
      self.seen[key] = draft
    return draft

  def _container(self, data: dict[str, Any], items: list[tuple[tuple[Any, ...], Any]], path: str, drop: tuple[str, ...]) -> _Draft:
    draft = _Draft(data)
    firsts = []
    for rel, layer in items:
      child = self.convert(layer, f"{path}.{'.'.join(str(r) for r in rel)}", drop)
      draft.children.append((rel, child))
      draft.param_ids += child.param_ids
      draft.positions += child.positions
      firsts.append(child.first_input)
    draft.first_input = next((f for f in firsts if f is not None), None)
    anchors = []
    for _, child in draft.children:
      if child.leaf_name is not None:
        anchors.append(_dirname(child.leaf_name))
      elif child.prefix is not None:
        anchors.append(child.prefix)
    if anchors:
      draft.prefix = _common(anchors)
    return draft

  def _convert(self, layer: Any, path: str, drop: tuple[str, ...]) -> _Draft:
    pz = self.pz
    nn = pz.nn
    from penzai.models import simple_mlp
    from penzai.models.transformer import model_parts

    t = type(layer)
    data: dict[str, Any]
    if t is model_parts.TransformerLM:
      return self._transformer(layer, path)
    if t is simple_mlp.MLP:
      return self._mlp(layer, path, drop)
    if t is nn.Affine:
      return self._affine(layer, path, drop)
    if t is nn.LinearInPlace:
      return self._linear_in_place(layer, path, drop)
    if t in (nn.LayerNorm, nn.RMSLayerNorm):
      return self._norm(layer, path, drop)
    if t is nn.Sequential:
      return self._container({"type": "Sequential", "layers": []},
                             [(("layers", i), s) for i, s in enumerate(layer.sublayers)], path, drop)
    if t is nn.NamedGroup:
      d = self._container({"type": "NamedGroup", "name": layer.name, "layers": []},
                          [(("layers", i), s) for i, s in enumerate(layer.sublayers)], path, drop)
      d.prefix = None  # its name is fixed by the group name
      return d
    if t is nn.Residual:
      delta = layer.delta
      items = ([(("layers", i), s) for i, s in enumerate(delta.sublayers)]
               if type(delta) is nn.Sequential and len(delta.sublayers) != 1 else [(("layers", 0), delta)])
      return self._container({"type": "Residual", "layers": []}, items, path, drop)
    if t in (nn.BranchAndAddTogether, nn.BranchAndMultiplyTogether):
      return self._container({"type": t.__name__, "branches": []},
                             [(("branches", i), s) for i, s in enumerate(layer.branches)], path, drop)
    if t is nn.Attention:
      fields = ("input_to_query", "input_to_key", "input_to_value", "query_key_to_attn", "attn_value_to_output")
      return self._container({"type": "Attention"}, [((f,), getattr(layer, f)) for f in fields], path, drop)
    if t is nn.LayerStack:
      return self._stack(layer, path, drop)
    if t is nn.Identity:
      return _Draft({"type": "Identity"})
    if t is nn.Linear:
      return self._linear(layer, path, drop)
    if t is nn.AddBias:
      name, shape, dtype, pid = self._param(layer.bias, path, ".bias", drop)
      new = {k: shape[k] for k in layer.new_axis_names}
      biased = {k: v for k, v in shape.items() if k not in new}
      data = {"type": "AddBias", "biased_axes": biased, "dtype": dtype}
      if new:
        data["new_output_axes"] = new
      return _Draft(data, leaf_name=name, param_ids=(pid,), first_input={"batch": "B", **biased})
    if t is nn.RenameAxes:
      return _Draft({"type": "RenameAxes", "old": _list(layer.old), "new": _list(layer.new)})
    if t is nn.ConstantRescale:
      return _Draft({"type": "ConstantRescale", "by": _float(layer.by, path)})
    if t is nn.NamedEinsum:
      return _Draft({"type": "NamedEinsum", "input_axes": [_axes_spec(s) for s in layer.input_axes],
                     "output_axes": _axes_spec(layer.output_axes)})
    if t is nn.TanhSoftCap:
      return _Draft({"type": "TanhSoftCap", "soft_cap": _float(layer.soft_cap, path)})
    if t is nn.Elementwise:
      return _Draft({"type": "Elementwise", "fn": self._activation(layer.fn, path)})
    if t is nn.Softmax:
      return _Draft({"type": "Softmax", "axes": _list(layer.axes)})
    if t is nn.CastToDType:
      import jax.numpy as jnp

      return _Draft({"type": "CastToDType", "dtype": str(jnp.dtype(layer.dtype))})
    if t in (nn.Standardize, nn.RMSStandardize):
      return _Draft({"type": t.__name__, "across": _list(layer.across), "epsilon": _float(layer.epsilon, path)})
    if t in (nn.StochasticDropout, nn.DisabledDropout):
      return _Draft({"type": "Dropout", "drop_rate": _float(layer.drop_rate, path),
                     "share_across_axes": list(layer.share_across_axes),
                     "random_stream_input_name": layer.random_stream_input_name,
                     "enabled": t is nn.StochasticDropout})
    if t is nn.EmbeddingLookup:
      name, shape, dtype, pid = self._param(layer.table.embeddings, path, ".embeddings", drop)
      vocab_axis = layer.table.vocabulary_axis
      draft = _Draft({"type": "EmbeddingLookup", "vocab_size": shape[vocab_axis],
                      "embedding_axes": {k: v for k, v in shape.items() if k != vocab_axis},
                      "vocabulary_axis": vocab_axis, "dtype": dtype},
                     leaf_name=name, param_ids=(pid,), first_input={"batch": "B", "seq": "S", "__dtype": "int32"})
      self.tables[pid] = draft
      return draft
    if t is nn.EmbeddingDecode:
      lookup = self.tables.get(str(getattr(layer.table.embeddings, "label", "")))
      if lookup is None:
        raise _Unsupported("EmbeddingDecode whose table is not used by an earlier EmbeddingLookup", path)
      return _Draft({"type": "EmbeddingDecode", "table": self._new_id(lookup)})
    if t in (nn.ApplyRoPE, nn.ApplyRoPEToSubset):
      data = {"type": t.__name__, "embedding_axis": layer.embedding_axis,
              "max_wavelength": float(layer.max_wavelength), "positions_input_name": layer.positions_input_name,
              "scale_factor": float(layer.scale_factor)}
      if t is nn.ApplyRoPEToSubset:
        data["rope_subset_size"] = int(layer.rope_subset_size)
      return _Draft(data, positions=(layer.positions_input_name,))
    if t in (nn.ApplyCausalAttentionMask, nn.ApplyCausalSlidingWindowAttentionMask):
      data = {"type": t.__name__, "masked_out_value": _float(layer.masked_out_value, path),
              "query_positions_input_name": layer.query_positions_input_name,
              "kv_positions_input_name": layer.kv_positions_input_name,
              "seq_axis": layer.seq_axis, "kv_seq_axis": layer.kv_seq_axis}
      if t is nn.ApplyCausalSlidingWindowAttentionMask:
        data["sliding_window_size"] = int(layer.sliding_window_size)
      return _Draft(data, positions=(layer.query_positions_input_name, layer.kv_positions_input_name))
    if t is nn.ApplyExplicitAttentionMask:
      return _Draft({"type": "ApplyExplicitAttentionMask", "mask_input_name": layer.mask_input_name,
                     "masked_out_value": _float(layer.masked_out_value, path)})
    raise _Unsupported(f"layer type {t.__module__}.{t.__qualname__} has no spec node", path)

  def _activation(self, fn: Any, path: str) -> str:
    name = registry.activation_name_of(fn)
    if name is None and isinstance(fn, functools.partial):
      import jax

      if fn.func is jax.nn.gelu and not fn.args and set(fn.keywords) == {"approximate"}:
        name = "gelu_approx" if fn.keywords["approximate"] else "gelu_exact"
    if name is None:
      raise _Unsupported(f"activation function {fn!r} is not registered (use dsl.register_activation)", path)
    return name

  def _linear(self, layer: Any, path: str, drop: tuple[str, ...]) -> _Draft:
    name, shape, dtype, pid = self._param(layer.weights, path, ".weights", drop)
    ins = {k: shape[k] for k in layer.in_axis_names}
    outs = {k: shape[k] for k in layer.out_axis_names}
    par = {k: v for k, v in shape.items() if k not in ins and k not in outs}
    data: dict[str, Any] = {"type": "Linear", "input_axes": ins, "output_axes": outs, "dtype": dtype}
    if par:
      data["parallel_axes"] = par
    return _Draft(data, leaf_name=name, param_ids=(pid,), first_input={"batch": "B", **ins, **par})

  def _linear_in_place(self, layer: Any, path: str, drop: tuple[str, ...]) -> _Draft:
    subs = layer.sublayers
    nn = self.pz.nn
    if len(subs) != 2 or type(subs[0]) is not nn.Linear or type(subs[1]) is not nn.RenameAxes:
      raise _Unsupported("LinearInPlace that is not [Linear, RenameAxes]", path)
    draft = self._linear(subs[0], path, drop)
    rename = dict(zip(_list(subs[1].old), _list(subs[1].new)))
    draft.data["output_axes"] = {rename.get(k, k): v for k, v in draft.data["output_axes"].items()}
    return draft

  def _affine(self, layer: Any, path: str, drop: tuple[str, ...]) -> _Draft:
    nn = self.pz.nn
    subs = list(layer.sublayers)
    ok = (len(subs) in (2, 3) and type(subs[0]) is nn.Linear and type(subs[-1]) is nn.AddBias
          and (len(subs) == 2 or type(subs[1]) is nn.RenameAxes))
    if not ok:
      raise _Unsupported("Affine whose sublayers are not [Linear, (RenameAxes), AddBias]", path)
    lin = self._linear(subs[0], path, drop)
    if len(subs) == 3:
      rename = dict(zip(_list(subs[1].old), _list(subs[1].new)))
      lin.data["output_axes"] = {rename.get(k, k): v for k, v in lin.data["output_axes"].items()}
    bname, _, _, bid = self._param(subs[-1].bias, path, ".bias", drop)
    lname = lin.leaf_name or ""
    if not lname.endswith("/Linear") or bname != lname[: -len("/Linear")] + "/AddBias":
      raise _Unsupported(f"Affine labels {lname!r}/{bname!r} are not '<name>/Linear', '<name>/AddBias'", path)
    lin.data["type"] = "Affine"
    return _Draft(lin.data, leaf_name=lname[: -len("/Linear")], param_ids=lin.param_ids + (bid,),
                  first_input=lin.first_input)

  def _norm(self, layer: Any, path: str, drop: tuple[str, ...]) -> _Draft:
    nn = self.pz.nn
    subs = list(layer.sublayers)
    is_ln = type(layer) is nn.LayerNorm
    std_t = nn.Standardize if is_ln else nn.RMSStandardize
    if not subs or type(subs[0]) is not std_t or type(subs[1]) is not nn.Linear or len(subs) != (3 if is_ln else 2):
      raise _Unsupported(f"{type(layer).__name__} with unexpected sublayers", path)
    name, shape, dtype, pid = self._param(subs[1].weights, path, "/scale.weights", drop)
    pids: tuple[str, ...] = (pid,)
    if is_ln:
      sname, _, _, sid = self._param(subs[2].bias, path, "/shift.bias", drop)
      if sname != name:
        raise _Unsupported(f"LayerNorm labels {name!r} and {sname!r} disagree", path)
      pids += (sid,)
    return _Draft({"type": type(layer).__name__, "across_axes": shape,
                   "epsilon": _float(subs[0].epsilon, path), "dtype": dtype},
                  leaf_name=name, param_ids=pids, first_input={"batch": "B", **shape})

  def _mlp(self, layer: Any, path: str, drop: tuple[str, ...]) -> _Draft:
    nn = self.pz.nn
    affines = [s for s in layer.sublayers if type(s) is nn.Affine]
    acts = [s for s in layer.sublayers if type(s) is nn.Elementwise]
    drafts = [self._affine(a, path, drop) for a in affines]
    if not drafts:
      raise _Unsupported("MLP without Affine layers", path)
    first = drafts[0]
    fa = next(iter(first.data["input_axes"]))
    sizes = [first.data["input_axes"][fa]] + [d.data["output_axes"][fa] for d in drafts]
    base = (first.leaf_name or "").rsplit("/Affine_0", 1)[0]
    data = {"type": "MLP", "feature_sizes": sizes, "feature_axis": fa}
    if acts:
      data["activation_fn"] = self._activation(acts[0].fn, path)
    pids = sum((d.param_ids for d in drafts), ())
    return _Draft(data, leaf_name=base, param_ids=pids, first_input={"batch": "B", fa: sizes[0]})

  def _stack(self, layer: Any, path: str, drop: tuple[str, ...]) -> _Draft:
    child = self.convert(layer.stacked_sublayers, f"{path}.layer", drop + (layer.stack_axis,))
    draft = _Draft({"type": "Repeat", "count": int(layer.stack_axis_size), "stack": True,
                    "stack_axis": layer.stack_axis}, children=[(("layer",), child)],
                   param_ids=child.param_ids, first_input=child.first_input, positions=child.positions)
    anchor = child.leaf_name if child.leaf_name is not None else child.prefix
    if anchor is not None:
      draft.prefix = _dirname(anchor)
    return draft

  def _transformer(self, layer: Any, path: str) -> _Draft:
    from penzai.dsl import transformer_recover

    data, name, pids = transformer_recover.transformer_data(self, layer, path)
    return _Draft(data, leaf_name=name, param_ids=pids,
                  first_input={"batch": "B", "seq": "S", "__dtype": "int32"})

  # -- naming ----------------------------------------------------------------

  def finish(self, draft: _Draft, parent: str) -> dict[str, Any]:
    """Assigns names top-down and returns the node data."""
    data = draft.data
    own = draft.leaf_name if draft.leaf_name is not None else draft.prefix
    if data["type"] == "NamedGroup":
      bname = f"{parent}/{data['name']}" if parent else data["name"]
    elif own is not None and data["type"] != "Ref":
      data["name"] = _relative(own, parent)
      bname = own
    else:
      bname = parent
    if data["type"] == "Repeat":
      _, child = draft.children[0]
      data["layer"] = self.finish(child, bname)
      if "name" not in data["layer"]:
        data["layer"]["name"] = ""
      return data
    for rel, child in draft.children:
      node = self.finish(child, bname)
      if len(rel) == 2:
        data.setdefault(rel[0], []).append(node)
      else:
        data[rel[0]] = node
    return data


def _relative(name: str, parent: str) -> str:
  if name == parent:
    return ""
  if not parent:
    return name
  if name.startswith(parent + "/"):
    return name[len(parent) + 1:]
  raise _Unsupported(f"label prefix {name!r} is not under {parent!r}", name)


def _list(value: Any) -> Any:
  return value if isinstance(value, str) else list(value)


def _axes_spec(spec: Any) -> Any:
  return dict(spec) if isinstance(spec, dict) else list(spec)


def _float(value: Any, path: str) -> float:
  """A Python float; float32-or-narrower arrays get their shortest float32 repr (1e-06, not 9.99e-07)."""
  import numpy as np

  dtype = getattr(value, "dtype", None)
  try:
    if dtype is not None and np.dtype(dtype).itemsize <= 4 and np.issubdtype(np.dtype(dtype), np.floating):
      return float(str(np.float32(np.asarray(value, dtype=np.float32))))
    return float(value)
  except (TypeError, ValueError):
    raise _Unsupported(
        f"expected a concrete scalar, got {value!r} (trees returned by jax.eval_shape lose scalar"
        " fields such as epsilons; use a concretely built model)", path) from None


def spec_of(model: Any, name: str | None = None, input: Any = None, side_inputs: dict[str, Any] | None = None) -> Any:  # noqa: A002
  """Recovers a `ModelSpec` describing `model` (a tree of supported `pz.nn` layers).

  Args:
    model: the root layer.
    name: document name (default: the common prefix of the parameter labels).
    input: the input contract (`TensorSpec` or mapping); inferred from the
      first layer when omitted (a `batch: B` symbol plus the axes it reads).
    side_inputs: side-input contracts; inferred for token positions.

  Returns:
    A `ModelSpec` that `dsl.build` turns into a tree with the same structure
    and parameter labels.

  Raises:
    SpecError: if the tree contains a layer without a spec node.
  """
  from penzai.dsl import builtins  # noqa: F401
  from penzai.dsl.document import validate_data
  from penzai.dsl.serialize import to_data

  rec = _Recoverer()
  try:
    draft = rec.convert(model, "model", ())
    root = name if name is not None else (
        draft.leaf_name if draft.leaf_name is not None else (draft.prefix if draft.prefix is not None else "model"))
    data_model = rec.finish(draft, root)
  except _Unsupported as e:
    raise SpecError([SpecIssue("unsupported", e.message, (e.path,))]) from None
  if data_model.get("name") == "":
    del data_model["name"]
  first = dict(draft.first_input or {"batch": "B"})
  dtype = first.pop("__dtype", "float32")
  sides = {k: to_data(v) for k, v in (side_inputs or {}).items()}
  positions = [p for p in dict.fromkeys(draft.positions) if p not in sides]
  if positions and "seq" not in first:
    first = {"batch": first.get("batch", "B"), "seq": "S", **{k: v for k, v in first.items() if k != "batch"}}
  for p in positions:
    sides[p] = {"named_shape": {"batch": "B", "seq": "S"}, "dtype": "int32"}
  data = {
      "spec_version": 1,
      "name": root,
      "input": to_data(input) if input is not None else {"named_shape": first, "dtype": dtype},
      "side_inputs": sides,
      "model": data_model,
  }
  return validate_data(data)


