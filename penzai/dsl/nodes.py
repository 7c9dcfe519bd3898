"""Pydantic models of the layer nodes of a spec (one class per `type:`).

Every node is a frozen Pydantic model with `extra="forbid"`; a field's
description becomes its JSON Schema editor hint and its entry in the generated
language reference. Leaf fields are the keyword arguments of the layer's
`from_config` (or constructor) minus `name` and `init_base_rng`; initializers,
activation functions and dtypes are named by strings.

Fields holding layers are typed `LayerSpec`: at runtime they accept a mapping
with a registered `type` (dispatched through the registry, so user-registered
types work everywhere) or an already-built node object.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError, core_schema

from penzai.dsl import registry
from penzai.dsl.errors import suggest

DType = Literal[
    "float32", "bfloat16", "float16", "float64",
    "int8", "int16", "int32", "int64", "uint8", "uint32", "bool",
]
FloatDType = Literal["float32", "bfloat16", "float16", "float64"]
Size = Annotated[int, Field(ge=1)]
AxisName = Annotated[str, StringConstraints(min_length=1)]
AxisSizes = dict[AxisName, Size]
NodeName = Annotated[str, StringConstraints(pattern=r"^[^.\s]*$")]
NodeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")]


def _check_activation(name: str) -> str:
  if name not in registry.activation_names():
    raise PydanticCustomError(
        "unknown_activation",
        "unknown activation function {name}{hint}; known: {known}",
        {"name": repr(name), "hint": suggest(name, registry.activation_names()),
         "known": ", ".join(registry.activation_names())},
    )
  return name


def _check_initializer(name: str) -> str:
  if name not in registry.initializer_names():
    raise PydanticCustomError(
        "unknown_initializer",
        "unknown initializer {name}{hint}; known: {known}",
        {"name": repr(name), "hint": suggest(name, registry.initializer_names()),
         "known": ", ".join(registry.initializer_names())},
    )
  return name


Activation = Annotated[str, AfterValidator(_check_activation)]
Initializer = Annotated[str, AfterValidator(_check_initializer)]


class NodeBase(BaseModel):
  """Base of every layer node (including `Ref`)."""

  model_config = ConfigDict(extra="forbid", frozen=True)
  type: str

  def child_items(self) -> list[tuple[tuple[str | int, ...], str, "NodeBase"]]:
    """Direct child nodes as (relative path, default name segment, node)."""
    out: list[tuple[tuple[str | int, ...], str, NodeBase]] = []
    for field in type(self).model_fields:
      value = getattr(self, field)
      if isinstance(value, NodeBase):
        out.append(((field,), field, value))
      elif isinstance(value, list):
        for i, item in enumerate(value):
          if isinstance(item, NodeBase):
            out.append(((field, i), f"{item.type}_{i}", item))
    return out


class _LayerDispatch:
  """Pydantic hook validating a layer mapping by looking up its `type` in the registry."""

  def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
    return core_schema.no_info_plain_validator_function(
        validate_layer,
        serialization=core_schema.plain_serializer_function_ser_schema(
            lambda v: v.model_dump(), when_used="always"
        ),
    )

  def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
    return {"x-penzai-layer": True}  # replaced by a $ref to the Layer union in schema.py


def validate_layer(value: Any) -> NodeBase:
  """Validates one layer node given as a mapping (or passes a node object through)."""
  if isinstance(value, NodeBase):
    return value
  if not isinstance(value, dict):
    raise PydanticCustomError(
        "layer_type", "expected a layer mapping with a `type` key, got {got}",
        {"got": type(value).__name__},
    )
  type_name = value.get("type")
  if type_name is None:
    raise PydanticCustomError("missing_type", "layer node is missing its `type` key")
  types = registry.layer_types()
  if not isinstance(type_name, str) or type_name not in types:
    raise PydanticCustomError(
        "unknown_type", "unknown layer type {t}{hint}",
        {"t": repr(type_name), "hint": suggest(str(type_name), types)},
    )
  cls = types[type_name].spec_cls
  variant_info = registry.variants().get(type_name)
  if variant_info is not None:
    field, choices = variant_info
    choice = value.get(field)
    if choice is None:
      raise PydanticCustomError(
          "missing_variant", "{t} node needs a `{f}` key (one of {c})",
          {"t": type_name, "f": field, "c": ", ".join(choices)},
      )
    if not isinstance(choice, str) or choice not in choices:
      raise PydanticCustomError(
          "unknown_variant", "unknown {t} {f} {v}{hint}; known: {c}",
          {"t": type_name, "f": field, "v": repr(choice), "hint": suggest(str(choice), choices),
           "c": ", ".join(choices)},
      )
    cls = choices[choice]
  return cls.model_validate(value)


LayerSpec = Annotated[NodeBase, _LayerDispatch()]


def _desc(text: str, **kwargs: Any) -> Any:
  return Field(description=text, **kwargs)


class LayerNode(NodeBase):
  """Base of all nodes that build a layer: adds the optional `name` and `id`."""

  name: NodeName | None = Field(
      None,
      description=(
          "Path segment of this node in parameter labels (default: `{type}_{index}` in a"
          " list, the field name otherwise; empty string: no segment)."
      ),
  )
  id: NodeId | None = Field(
      None, description="Identifier that later `Ref` nodes (or `EmbeddingDecode.table`) reuse."
  )


# --------------------------------------------------------------------------- containers


class Sequential(LayerNode):
  """Runs `layers` in order (`pz.nn.Sequential`)."""

  type: Literal["Sequential"] = "Sequential"
  layers: list[LayerSpec] = _desc("The layers, applied in order.")


class NamedGroup(LayerNode):
  """A labelled sequence (`pz.nn.NamedGroup`); `name` is both its group name and path segment."""

  type: Literal["NamedGroup"] = "NamedGroup"
  name: NodeName | None = _desc(
      "Group name (the NamedGroup's `name` field) and path segment (default `NamedGroup_{index}`,"
      " or the document name at the root).", default=None)
  layers: list[LayerSpec] = _desc("The layers, applied in order.")


class Residual(LayerNode):
  """`x + delta(x)` (`pz.nn.Residual`); several layers are wrapped in a Sequential."""

  type: Literal["Residual"] = "Residual"
  layers: list[LayerSpec] = _desc("The delta layer(s), applied in order.", min_length=1)


class BranchAndAddTogether(LayerNode):
  """Sum of the outputs of every branch applied to the same input."""

  type: Literal["BranchAndAddTogether"] = "BranchAndAddTogether"
  branches: list[LayerSpec] = _desc("The branches (at least one).", min_length=1)


class BranchAndMultiplyTogether(LayerNode):
  """Product of the outputs of every branch applied to the same input."""

  type: Literal["BranchAndMultiplyTogether"] = "BranchAndMultiplyTogether"
  branches: list[LayerSpec] = _desc("The branches (at least one).", min_length=1)


class Identity(LayerNode):
  """Returns its input unchanged (`pz.nn.Identity`)."""

  type: Literal["Identity"] = "Identity"


class Ref(NodeBase):
  """Reuses the layer built for the node with this `id` (same object, shared parameters)."""

  type: Literal["Ref"] = "Ref"
  id: NodeId = _desc("The `id` of an earlier node.")


class Repeat(LayerNode):
  """`count` copies of `layer` in sequence; `stack: true` builds one `pz.nn.LayerStack`."""

  type: Literal["Repeat"] = "Repeat"
  count: int = _desc("Number of copies.", ge=1)
  layer: LayerSpec = _desc("The repeated layer; copy i is named `{name or type}_{i}`.")
  stack: bool = _desc(
      "Build a `pz.nn.LayerStack` (parameters stacked along `stack_axis`) instead of a"
      " Sequential of copies.", default=False,
  )
  stack_axis: AxisName = _desc("Stack axis name when `stack` is true.", default="blocks")


class Attention(LayerNode):
  """`pz.nn.Attention` with its five sub-layers."""

  type: Literal["Attention"] = "Attention"
  input_to_query: LayerSpec = _desc("Computes queries from the input.")
  input_to_key: LayerSpec = _desc("Computes keys from the input.")
  input_to_value: LayerSpec = _desc("Computes values from the input.")
  query_key_to_attn: LayerSpec = _desc("Maps the (query, key) pair to attention weights.")
  attn_value_to_output: LayerSpec = _desc("Maps the (attention, value) pair to the output.")


# --------------------------------------------------------------------------- linear layers


class Linear(LayerNode):
  """`pz.nn.Linear.from_config`: a named-axis linear map (label `{name}.weights`)."""

  type: Literal["Linear"] = "Linear"
  input_axes: AxisSizes = _desc("Axes contracted away: name -> size.")
  output_axes: AxisSizes = _desc("Axes produced: name -> size.")
  parallel_axes: AxisSizes | None = _desc("Axes kept and vectorized over (block-diagonal).", default=None)
  parallel_broadcast_axes: AxisSizes | None = _desc(
      "Axes added to the output, initialized like parallel axes.", default=None
  )
  initializer: Initializer = _desc("Weight initializer name.", default="xavier_uniform")
  dtype: FloatDType = _desc("Parameter dtype.", default="float32")
  rename_outputs_if_necessary: bool = _desc(
      "Allow output axes named like input axes (renamed through a temporary name).", default=True
  )


class AddBias(LayerNode):
  """`pz.nn.AddBias.from_config`: adds a learned bias (label `{name}.bias`)."""

  type: Literal["AddBias"] = "AddBias"
  biased_axes: AxisSizes = _desc("Axes of the bias that the input already has.")
  new_output_axes: AxisSizes | None = _desc("Axes the bias adds to the output.", default=None)
  initializer: Initializer = _desc("Bias initializer name.", default="zeros")
  dtype: FloatDType = _desc("Parameter dtype.", default="float32")


class Affine(LayerNode):
  """`pz.nn.Affine.from_config`: Linear then AddBias (labels `{name}/Linear.weights`, `{name}/AddBias.bias`)."""

  type: Literal["Affine"] = "Affine"
  input_axes: AxisSizes = _desc("Axes contracted away: name -> size.")
  output_axes: AxisSizes = _desc("Axes produced: name -> size.")
  parallel_axes: AxisSizes | None = _desc("Axes kept and vectorized over.", default=None)
  parallel_broadcast_axes: AxisSizes | None = _desc("Axes added to the output.", default=None)
  linear_initializer: Initializer = _desc("Weight initializer name.", default="xavier_uniform")
  bias_initializer: Initializer = _desc("Bias initializer name.", default="zeros")
  dtype: FloatDType = _desc("Parameter dtype.", default="float32")
  rename_outputs_if_necessary: bool = _desc(
      "Allow output axes named like input axes.", default=True
  )


class RenameAxes(LayerNode):
  """`pz.nn.RenameAxes`: renames named axes `old` to `new`."""

  type: Literal["RenameAxes"] = "RenameAxes"
  old: AxisName | list[AxisName] = _desc("Axis name(s) to rename.")
  new: AxisName | list[AxisName] = _desc("New axis name(s), same count as `old`.")


class ConstantRescale(LayerNode):
  """`pz.nn.ConstantRescale`: multiplies by a constant."""

  type: Literal["ConstantRescale"] = "ConstantRescale"
  by: float = _desc("The constant factor.")


class NamedEinsum(LayerNode):
  """`pz.nn.NamedEinsum`: einsum over named axes of a tuple of inputs."""

  type: Literal["NamedEinsum"] = "NamedEinsum"
  input_axes: list[list[AxisName] | dict[AxisName, str]] = _desc(
      "Per input: axis names, or a mapping axis name -> einsum index name.", min_length=1
  )
  output_axes: list[AxisName] | dict[AxisName, str] = _desc(
      "Output axis names, or a mapping output axis name -> index name."
  )


class TanhSoftCap(LayerNode):
  """`pz.nn.TanhSoftCap`: `tanh(x / soft_cap) * soft_cap`."""

  type: Literal["TanhSoftCap"] = "TanhSoftCap"
  soft_cap: float = _desc("The cap.", gt=0)


# --------------------------------------------------------------------------- basic ops


class Elementwise(LayerNode):
  """`pz.nn.Elementwise` with a registered activation function."""

  type: Literal["Elementwise"] = "Elementwise"
  fn: Activation = _desc("Activation name (relu, gelu, gelu_exact, silu, tanh, sigmoid, softplus, identity, ...).")


class Softmax(LayerNode):
  """`pz.nn.Softmax` jointly over `axes`."""

  type: Literal["Softmax"] = "Softmax"
  axes: AxisName | list[AxisName] = _desc("Axis or axes normalized over.")


class CastToDType(LayerNode):
  """`pz.nn.CastToDType`: casts every array to `dtype`."""

  type: Literal["CastToDType"] = "CastToDType"
  dtype: DType = _desc("Target dtype.")


# --------------------------------------------------------------------------- standardization


class LayerNorm(LayerNode):
  """`pz.nn.LayerNorm.from_config` (labels `{name}/scale.weights`, `{name}/shift.bias`)."""

  type: Literal["LayerNorm"] = "LayerNorm"
  across_axes: AxisSizes = _desc("Axes normalized over: name -> size.", min_length=1)
  epsilon: float = _desc("Variance epsilon.", default=1e-6, ge=0)
  dtype: FloatDType = _desc("Parameter dtype.", default="float32")


class RMSLayerNorm(LayerNode):
  """`pz.nn.RMSLayerNorm.from_config` (label `{name}/scale.weights`)."""

  type: Literal["RMSLayerNorm"] = "RMSLayerNorm"
  across_axes: AxisSizes = _desc("Axes normalized over: name -> size.", min_length=1)
  epsilon: float = _desc("Epsilon added to the mean square.", default=1e-6, ge=0)
  dtype: FloatDType = _desc("Parameter dtype.", default="float32")


class Standardize(LayerNode):
  """`pz.nn.Standardize`: zero mean, unit variance over `across` (no parameters)."""

  type: Literal["Standardize"] = "Standardize"
  across: AxisName | list[AxisName] = _desc("Axis or axes standardized over.")
  epsilon: float = _desc("Variance epsilon.", default=1e-6, ge=0)


class RMSStandardize(LayerNode):
  """`pz.nn.RMSStandardize`: divides by the root mean square over `across`."""

  type: Literal["RMSStandardize"] = "RMSStandardize"
  across: AxisName | list[AxisName] = _desc("Axis or axes standardized over.")
  epsilon: float = _desc("Epsilon added to the mean square.", default=1e-6, ge=0)


class Dropout(LayerNode):
  """`pz.nn.StochasticDropout` (or `DisabledDropout` when `enabled: false`)."""

  type: Literal["Dropout"] = "Dropout"
  drop_rate: float = _desc("Probability of dropping an element.", ge=0.0, lt=1.0)
  share_across_axes: list[AxisName] = _desc("Axes sharing one dropout mask.", default_factory=list)
  random_stream_input_name: str = _desc(
      "Side input holding the `pz.RandomStream`.", default="random_stream"
  )
  enabled: bool = _desc("Build StochasticDropout (true) or DisabledDropout (false).", default=True)


# --------------------------------------------------------------------------- embeddings


class EmbeddingLookup(LayerNode):
  """`pz.nn.EmbeddingLookup` over a new `EmbeddingTable.from_config` (label `{name}.embeddings`)."""

  type: Literal["EmbeddingLookup"] = "EmbeddingLookup"
  vocab_size: int = _desc("Number of rows of the table.", ge=1)
  embedding_axes: AxisSizes = _desc("Axes of one embedding: name -> size.", min_length=1)
  vocabulary_axis: AxisName = _desc("Name of the vocabulary axis.", default="vocabulary")
  initializer: Initializer = _desc("Table initializer name.", default="fan_out_normal")
  dtype: FloatDType = _desc("Parameter dtype.", default="float32")


class EmbeddingDecode(LayerNode):
  """`pz.nn.EmbeddingDecode` sharing the table of an `EmbeddingLookup` (weight tying)."""

  type: Literal["EmbeddingDecode"] = "EmbeddingDecode"
  table: NodeId = _desc("The `id` of an earlier EmbeddingLookup node.")


class ApplyRoPE(LayerNode):
  """`pz.nn.ApplyRoPE`: rotary position embedding along `embedding_axis`."""

  type: Literal["ApplyRoPE"] = "ApplyRoPE"
  embedding_axis: AxisName = _desc("Axis rotated (even size).")
  max_wavelength: float = _desc("Maximum wavelength.", gt=0)
  positions_input_name: str = _desc("Side input with integer token positions.")
  scale_factor: float = _desc("Position scale factor (>= 1).", default=1.0, ge=1.0)


class ApplyRoPEToSubset(LayerNode):
  """`pz.nn.ApplyRoPEToSubset`: RoPE on the first `rope_subset_size` entries only."""

  type: Literal["ApplyRoPEToSubset"] = "ApplyRoPEToSubset"
  embedding_axis: AxisName = _desc("Axis rotated.")
  max_wavelength: float = _desc("Maximum wavelength.", gt=0)
  rope_subset_size: int = _desc("How many leading entries are rotated (even).", ge=2)
  positions_input_name: str = _desc("Side input with integer token positions.")
  scale_factor: float = _desc("Position scale factor (>= 1).", default=1.0, ge=1.0)


# --------------------------------------------------------------------------- attention masks

_MASKED = -2.3819763e38


class ApplyCausalAttentionMask(LayerNode):
  """`pz.nn.ApplyCausalAttentionMask`: masks logits where query position < key position."""

  type: Literal["ApplyCausalAttentionMask"] = "ApplyCausalAttentionMask"
  masked_out_value: float = _desc("Value written where masked.", default=_MASKED)
  query_positions_input_name: str = _desc("Side input of query positions.", default="token_positions")
  kv_positions_input_name: str = _desc("Side input of key positions.", default="token_positions")
  seq_axis: AxisName = _desc("Query sequence axis.", default="seq")
  kv_seq_axis: AxisName = _desc("Key sequence axis of the logits.", default="kv_seq")


class ApplyCausalSlidingWindowAttentionMask(LayerNode):
  """`pz.nn.ApplyCausalSlidingWindowAttentionMask`: causal mask limited to a window."""

  type: Literal["ApplyCausalSlidingWindowAttentionMask"] = "ApplyCausalSlidingWindowAttentionMask"
  sliding_window_size: int = _desc("Window length.", ge=1)
  masked_out_value: float = _desc("Value written where masked.", default=_MASKED)
  query_positions_input_name: str = _desc("Side input of query positions.", default="token_positions")
  kv_positions_input_name: str = _desc("Side input of key positions.", default="token_positions")
  seq_axis: AxisName = _desc("Query sequence axis.", default="seq")
  kv_seq_axis: AxisName = _desc("Key sequence axis of the logits.", default="kv_seq")


class ApplyExplicitAttentionMask(LayerNode):
  """`pz.nn.ApplyExplicitAttentionMask`: masks with a boolean side input (True = keep)."""

  type: Literal["ApplyExplicitAttentionMask"] = "ApplyExplicitAttentionMask"
  mask_input_name: str = _desc("Side input holding the boolean mask.")
  masked_out_value: float = _desc("Value written where masked.", default=_MASKED)


# --------------------------------------------------------------------------- models


class MLP(LayerNode):
  """`penzai.models.simple_mlp.MLP.from_config` (labels `{name}/Affine_{i}/...`)."""

  type: Literal["MLP"] = "MLP"
  feature_sizes: list[Size] = _desc("Feature sizes, input first (at least two).", min_length=2)
  activation_fn: Activation = _desc("Activation between the Affine layers.", default="relu")
  feature_axis: AxisName = _desc("The feature axis name.", default="features")


BUILTIN_NODE_CLASSES: tuple[type[NodeBase], ...] = (
    Sequential, NamedGroup, Residual, BranchAndAddTogether, BranchAndMultiplyTogether,
    Identity, Ref, Repeat, Attention, Linear, AddBias, Affine, RenameAxes, ConstantRescale,
    NamedEinsum, TanhSoftCap, Elementwise, Softmax, CastToDType, LayerNorm, RMSLayerNorm,
    Standardize, RMSStandardize, Dropout, EmbeddingLookup, EmbeddingDecode, ApplyRoPE,
    ApplyRoPEToSubset, ApplyCausalAttentionMask, ApplyCausalSlidingWindowAttentionMask,
    ApplyExplicitAttentionMask, MLP,
)
