"""Reference conformance: signatures, fields and bases in `penzai.nn` (nn.md)."""

from __future__ import annotations

import abc
import dataclasses
import enum
import functools
from typing import Protocol

import pytest

from penzai import pz
import refconf_harness as h

N = "penzai.nn"
LAYER = f"{N}.layer:Layer"
SEQ = f"{N}.grouping:Sequential"
STRUCT = "penzai.core.struct:Struct"
CALL_MAIN = "(self, value, **side_inputs)"
CALL_POSONLY = "(self, argument, /, **side_inputs)"
TREESCOPE_COLOR = "(self)"
AXIS_INIT_KWARGS = (
    "*, input_axes: dict[str, int], output_axes: dict[str, int], parallel_axes:"
    " dict[str, int], convolution_spatial_axes: dict[str, int], dtype:"
    " jax.typing.DTypeLike"
)

CALLABLES: list[tuple[str, str]] = [
    # layer
    (f"{LAYER}.__call__", "(self, argument: Any, /, **side_inputs: Any) -> Any"),
    (
        f"{LAYER}.bind_variables",
        "(self, variables: Iterable[AbstractVariable | AbstractVariableValue],"
        " allow_unused: bool = False) -> Layer",
    ),
    (
        f"{LAYER}.stateless_call",
        "(self, variable_values: Iterable[AbstractVariableValue], argument: Any, /,"
        " **side_inputs: dict[Any, Any])",
    ),
    (f"{LAYER}.__treescope_repr__", "(self, path, subtree_renderer)"),
    # parameters
    (f"{N}.parameters:ParameterLike.value", "property"),
    (f"{N}.parameters:derive_param_key", "(base_rng: jax.Array, name: str) -> jax.Array"),
    (
        f"{N}.parameters:make_parameter",
        "(name: str, init_base_rng: jax.Array | None, initializer: Callable[..., T],"
        " *init_args, metadata: dict[Any, Any] | None = None, **init_kwargs)",
    ),
    (f"{N}.parameters:assert_no_parameter_slots", "(model: Any)"),
    # grouping
    (f"{SEQ}.__call__", "(self, value: Any, **side_inputs) -> Any"),
    (f"{SEQ}.treescope_color", TREESCOPE_COLOR),
    (f"{N}.grouping:NamedGroup.__call__", CALL_MAIN),
    (f"{N}.grouping:NamedGroup.treescope_color", TREESCOPE_COLOR),
    (f"{N}.grouping:CheckedSequential.__call__", CALL_MAIN),
    (f"{N}.grouping:CheckedSequential.treescope_color", TREESCOPE_COLOR),
    (f"{N}.grouping:Identity.__call__", "(self, value, **_unused_side_inputs)"),
    (f"{N}.grouping:Identity.treescope_color", TREESCOPE_COLOR),
    (f"{N}.grouping:CheckStructure.__call__", "(self, value, **_)"),
    (f"{N}.grouping:CheckStructure.treescope_color", TREESCOPE_COLOR),
    (f"{N}.grouping:is_sequential_or_named", "(tree: Any) -> bool"),
    (f"{N}.grouping:is_anonymous_sequential", "(tree: Any) -> bool"),
    (
        f"{N}.grouping:inline_groups",
        "(tree: Any, parent_filter: Callable[[Any], bool], child_filter:"
        " Callable[[Any], bool]) -> Any",
    ),
    (f"{N}.grouping:inline_anonymous_sequentials", "(tree: Any) -> Any"),
    # combinators
    (f"{N}.combinators:Residual.__call__", CALL_MAIN),
    (f"{N}.combinators:BranchAndAddTogether.__call__", CALL_MAIN),
    (f"{N}.combinators:BranchAndMultiplyTogether.__call__", CALL_MAIN),
    # basic_ops
    (f"{N}.basic_ops:Elementwise.__call__", "(self, value, **_)"),
    (f"{N}.basic_ops:Elementwise.treescope_color", TREESCOPE_COLOR),
    (f"{N}.basic_ops:Softmax.__call__", "(self, inputs, **_)"),
    (f"{N}.basic_ops:CastToDType.__call__", "(self, value, **_)"),
    (f"{N}.basic_ops:TanhSoftCap.__call__", "(self, value, **_)"),
    # linear_and_affine
    (
        f"{N}.linear_and_affine:LinearOperatorWeightInitializer.__call__",
        f"(self, key: jax.Array, {AXIS_INIT_KWARGS}) -> NamedArray",
    ),
    (
        f"{N}.linear_and_affine:check_unique_axis_names_for_initializer",
        "(input_axes, output_axes, parallel_axes, convolution_spatial_axes) -> None",
    ),
    (
        f"{N}.linear_and_affine:variance_scaling_initializer",
        "(key: jax.Array, *, scale: float, mode: Literal['fan_in', 'fan_out',"
        " 'fan_avg'], distribution: Literal['uniform', 'normal',"
        " 'truncated_normal'], input_axes: dict[str, int], output_axes:"
        " dict[str, int], parallel_axes: dict[str, int], convolution_spatial_axes:"
        " dict[str, int], dtype: jax.typing.DTypeLike) -> jax.Array",
    ),
    (
        f"{N}.linear_and_affine:constant_initializer",
        "(value: float) -> LinearOperatorWeightInitializer",
    ),
    (f"{N}.linear_and_affine:zero_initializer", f"(key, {AXIS_INIT_KWARGS})"),
    (f"{N}.linear_and_affine:RenameAxes.__call__", "(self, value, **_)"),
    (f"{N}.linear_and_affine:LinearInPlace.treescope_color", TREESCOPE_COLOR),
    (
        f"{N}.linear_and_affine:contract",
        "(names: str | Sequence[AxisName], left: NamedArray, right: NamedArray) -> NamedArray",
    ),
    (f"{N}.linear_and_affine:NamedEinsum.__call__", "(self, arrays, **_)"),
    (f"{N}.linear_and_affine:Linear.__call__", "(self, in_array, **_)"),
    (
        f"{N}.linear_and_affine:Linear.from_config",
        "(cls, name: str, init_base_rng: jax.Array | None, input_axes: dict[str,"
        " int], output_axes: dict[str, int], parallel_axes: dict[str, int] | None"
        " = None, parallel_broadcast_axes: dict[str, int] | None = None,"
        " initializer: LinearOperatorWeightInitializer ="
        " xavier_uniform_initializer, dtype: jax.typing.DTypeLike = jnp.float32,"
        " rename_outputs_if_necessary: bool = True) -> Linear | LinearInPlace",
    ),
    (f"{N}.linear_and_affine:Linear.input_axes", "property"),
    (f"{N}.linear_and_affine:Linear.output_axes", "property"),
    (f"{N}.linear_and_affine:Linear.parallel_axes", "property"),
    (f"{N}.linear_and_affine:Linear.treescope_color", TREESCOPE_COLOR),
    (f"{N}.linear_and_affine:AddBias.__call__", "(self, value, **_)"),
    (
        f"{N}.linear_and_affine:AddBias.from_config",
        "(cls, name: str, init_base_rng: jax.Array | None, biased_axes: dict[str,"
        " int], new_output_axes: dict[str, int] | None = None, initializer:"
        " LinearOperatorWeightInitializer = zero_initializer, dtype:"
        " jax.typing.DTypeLike = jnp.float32) -> AddBias",
    ),
    (f"{N}.linear_and_affine:AddBias.treescope_color", TREESCOPE_COLOR),
    (
        f"{N}.linear_and_affine:Affine.from_config",
        "(cls, name: str, init_base_rng: jax.Array | None, input_axes: dict[str,"
        " int], output_axes: dict[str, int], parallel_axes: dict[str, int] | None"
        " = None, parallel_broadcast_axes: dict[str, int] | None = None,"
        " linear_initializer: LinearOperatorWeightInitializer ="
        " xavier_uniform_initializer, bias_initializer:"
        " LinearOperatorWeightInitializer = zero_initializer, dtype:"
        " jax.typing.DTypeLike = jnp.float32, rename_outputs_if_necessary: bool ="
        " True) -> Affine",
    ),
    (f"{N}.linear_and_affine:Affine.treescope_color", TREESCOPE_COLOR),
    (f"{N}.linear_and_affine:ConstantRescale.__call__", "(self, value, **_)"),
    # standardization
    (f"{N}.standardization:Standardize.__call__", "(self, value, **_)"),
    (
        f"{N}.standardization:LayerNorm.from_config",
        "(cls, name: str, init_base_rng: jax.Array | None, across_axes: dict[str,"
        " int], epsilon: float | jax.Array = 1e-6, dtype: jax.typing.DTypeLike ="
        " jnp.float32) -> LayerNorm",
    ),
    (f"{N}.standardization:RMSStandardize.__call__", "(self, value, **_)"),
    (
        f"{N}.standardization:RMSLayerNorm.from_config",
        "(cls, name: str, init_base_rng: jax.Array | None, across_axes: dict[str,"
        " int], epsilon: float | jax.Array = 1e-6, dtype: jax.typing.DTypeLike ="
        " jnp.float32) -> RMSLayerNorm",
    ),
    # dropout
    (f"{N}.dropout:StochasticDropout.__call__", "(self, value: NamedArray, /, **side_inputs)"),
    (f"{N}.dropout:StochasticDropout.disable", "(self) -> DisabledDropout"),
    (f"{N}.dropout:DisabledDropout.enable", "(self) -> StochasticDropout"),
    (
        f"{N}.dropout:maybe_dropout",
        "(drop_rate: float | None, share_across_axes: tuple[str, ...] = (),"
        " random_stream_input_name: str = 'random_stream') -> StochasticDropout |"
        " DisabledDropout",
    ),
    # attention
    (f"{N}.attention:ApplyExplicitAttentionMask.__call__", "(self, x, **side_inputs)"),
    (f"{N}.attention:ApplyCausalAttentionMask.__call__", "(self, x, **side_inputs)"),
    (
        f"{N}.attention:ApplyCausalSlidingWindowAttentionMask.__call__",
        "(self, x, **side_inputs)",
    ),
    (f"{N}.attention:Attention.__call__", "(self, x, **side_inputs)"),
    (f"{N}.attention:Attention.treescope_color", TREESCOPE_COLOR),
    (f"{N}.attention:KVCachingAttention.__call__", "(self, x, **side_inputs)"),
    (
        f"{N}.attention:KVCachingAttention.from_uncached",
        "(cls, original: Attention, sequence_axis: str, cache_len: int,"
        " cached_axes: dict[str, int], cache_end_index_key: Hashable,"
        " cache_dtype: jax.typing.DTypeLike = jnp.float32, cache_label:"
        " VariableLabel | None = None, layerstack_axes: dict[AxisName, int] |"
        " None = None) -> KVCachingAttention",
    ),
    # embeddings
    (
        f"{N}.embeddings:EmbeddingTable.from_config",
        "(cls, name: str, init_base_rng: jax.Array | None, vocab_size: int,"
        " embedding_axes: dict[str, int], vocabulary_axis: str = 'vocabulary',"
        " initializer: LinearOperatorWeightInitializer = functools.partial("
        "penzai.nn.linear_and_affine.variance_scaling_initializer, scale=1.0,"
        " mode='fan_out', distribution='normal'), dtype: np.typing.DTypeLike ="
        " np.float32) -> EmbeddingTable",
    ),
    (f"{N}.embeddings:EmbeddingLookup.__call__", "(self, token_index, **_)"),
    (f"{N}.embeddings:EmbeddingDecode.__call__", "(self, out_embeddings, **_)"),
    (f"{N}.embeddings:ApplyRoPE.__call__", "(self, inputs, **side_inputs)"),
    (f"{N}.embeddings:ApplyRoPEToSubset.__call__", "(self, inputs, **side_inputs)"),
    # layer_stack
    (f"{N}.layer_stack:LayerStack.key_for_field", "(self, field_name: str) -> Hashable"),
    (f"{N}.layer_stack:LayerStack.__call__", CALL_POSONLY),
    (
        f"{N}.layer_stack:LayerStack.from_sublayer_builder",
        "(cls, builder: Callable[..., Layer], stack_axis: AxisName,"
        " stack_axis_size: int, init_base_rng: jax.Array | None, builder_kwargs:"
        " dict[str, Any]) -> LayerStack",
    ),
    (
        f"{N}.layer_stack:layerstack_axes_from_keypath",
        "(keypath: tuple[Any, ...]) -> dict[AxisName, int]",
    ),
]

_MASK_TAIL = (
    "query_positions_input_name: static = 'token_positions',"
    " kv_positions_input_name: static = 'token_positions', seq_axis: static ="
    " 'seq', kv_seq_axis: static = 'kv_seq'"
)
_ATTN_FIELDS = (
    "input_to_query, input_to_key, input_to_value, query_key_to_attn,"
    " attn_value_to_output"
)


def _layer(target: str, fields: str, *bases: str, implicit: bool | None = None) -> h.ClassSpec:
  return h.ClassSpec(
      target, bases=(LAYER, *bases), fields=fields, pytree=True, implicit=implicit
  )


CLASSES: list[h.ClassSpec] = [
    h.ClassSpec(LAYER, bases=(STRUCT, abc.ABC), pytree=False),
    h.ClassSpec(f"{N}.parameters:ParameterLike", bases=(Protocol,)),
    _layer(SEQ, "(sublayers)"),
    _layer(f"{N}.grouping:NamedGroup", "(name: static, sublayers)"),
    _layer(
        f"{N}.grouping:CheckedSequential",
        "(input_like: static, output_like: static, sublayers)",
    ),
    _layer(f"{N}.grouping:Identity", "()"),
    _layer(f"{N}.grouping:CheckStructure", "(expected)"),
    _layer(f"{N}.combinators:Residual", "(delta)"),
    _layer(f"{N}.combinators:BranchAndAddTogether", "(branches)"),
    _layer(f"{N}.combinators:BranchAndMultiplyTogether", "(branches)"),
    _layer(f"{N}.basic_ops:Elementwise", "(fn: static)"),
    _layer(f"{N}.basic_ops:Softmax", "(axes: static)"),
    _layer(f"{N}.basic_ops:CastToDType", "(dtype: static)"),
    _layer(f"{N}.basic_ops:TanhSoftCap", "(soft_cap)"),
    h.ClassSpec(f"{N}.linear_and_affine:LinearOperatorWeightInitializer", bases=(Protocol,)),
    _layer(f"{N}.linear_and_affine:RenameAxes", "(old: static, new: static)"),
    _layer(f"{N}.linear_and_affine:LinearInPlace", "(sublayers)", SEQ, implicit=False),
    _layer(f"{N}.linear_and_affine:NamedEinsum", "(input_axes: static, output_axes: static)"),
    _layer(
        f"{N}.linear_and_affine:Linear",
        "(weights, in_axis_names: static, out_axis_names: static)",
    ),
    _layer(f"{N}.linear_and_affine:AddBias", "(bias, new_axis_names: static)"),
    _layer(f"{N}.linear_and_affine:Affine", "(sublayers)", SEQ, implicit=False),
    _layer(f"{N}.linear_and_affine:ConstantRescale", "(by)"),
    _layer(f"{N}.standardization:Standardize", "(across: static, epsilon = 1e-6)"),
    _layer(f"{N}.standardization:LayerNorm", "(sublayers)", SEQ, implicit=False),
    _layer(f"{N}.standardization:RMSStandardize", "(across: static, epsilon = 1e-6)"),
    _layer(f"{N}.standardization:RMSLayerNorm", "(sublayers)", SEQ, implicit=False),
    _layer(
        f"{N}.dropout:StochasticDropout",
        "(drop_rate, share_across_axes: static = (), random_stream_input_name:"
        " static = 'random_stream')",
    ),
    _layer(
        f"{N}.dropout:DisabledDropout",
        "(drop_rate, share_across_axes: static, random_stream_input_name: static"
        " = 'random_stream')",
        f"{N}.grouping:Identity",
    ),
    _layer(
        f"{N}.attention:ApplyExplicitAttentionMask",
        "(mask_input_name: static, masked_out_value)",
    ),
    _layer(f"{N}.attention:ApplyCausalAttentionMask", f"(masked_out_value, {_MASK_TAIL})"),
    _layer(
        f"{N}.attention:ApplyCausalSlidingWindowAttentionMask",
        f"(masked_out_value, sliding_window_size, {_MASK_TAIL})",
    ),
    _layer(f"{N}.attention:Attention", f"({_ATTN_FIELDS})"),
    _layer(
        f"{N}.attention:KVCachingAttention",
        f"({_ATTN_FIELDS}, sequence_axis: static, kv_cache_end_index_key: static,"
        " kv_cache)",
    ),
    h.ClassSpec(
        f"{N}.embeddings:EmbeddingTable",
        bases=(STRUCT,),
        fields="(embeddings, vocabulary_axis: static)",
        pytree=True,
    ),
    _layer(f"{N}.embeddings:EmbeddingLookup", "(table)"),
    _layer(f"{N}.embeddings:EmbeddingDecode", "(table)"),
    _layer(
        f"{N}.embeddings:ApplyRoPE",
        "(embedding_axis: static, max_wavelength: static, positions_input_name:"
        " static, scale_factor: static = 1.0)",
    ),
    _layer(
        f"{N}.embeddings:ApplyRoPEToSubset",
        "(embedding_axis: static, max_wavelength: static, rope_subset_size:"
        " static, positions_input_name: static, scale_factor: static = 1.0)",
    ),
    h.ClassSpec(f"{N}.layer_stack:LayerStackVarBehavior", bases=(enum.Enum,)),
    h.ClassSpec(
        f"{N}.layer_stack:LayerStackGetAttrKey",
        bases=("penzai.core.tree_util:CustomGetAttrKey",),
        fields="(name, stack_axis, stack_axis_size)",
        dataclass_params=(("frozen", True),),
    ),
    _layer(
        f"{N}.layer_stack:LayerStack",
        "(stacked_sublayers, stack_axis: static, stack_axis_size: static)",
    ),
]

# Mismatches in modules this audit may not edit: (target -> reason). Each is an
# xfail(strict=True) so that fixing the module makes the test flag it.
KNOWN_MISMATCHES: dict[str, str] = {}

PZ_NN_NAMES = {
    "attention": "ApplyExplicitAttentionMask ApplyCausalAttentionMask"
    " ApplyCausalSlidingWindowAttentionMask Attention KVCachingAttention",
    "basic_ops": "CastToDType Elementwise Softmax TanhSoftCap",
    "combinators": "Residual BranchAndAddTogether BranchAndMultiplyTogether",
    "dropout": "DisabledDropout maybe_dropout StochasticDropout",
    "embeddings": "EmbeddingTable EmbeddingLookup EmbeddingDecode ApplyRoPE ApplyRoPEToSubset",
    "grouping": "CheckedSequential CheckStructure Identity inline_anonymous_sequentials"
    " inline_groups is_anonymous_sequential is_sequential_or_named NamedGroup Sequential",
    "layer": "Layer",
    "layer_stack": "LayerStackVarBehavior LayerStackGetAttrKey LayerStack"
    " layerstack_axes_from_keypath",
    "linear_and_affine": "AddBias ConstantRescale NamedEinsum Affine Linear"
    " LinearOperatorWeightInitializer LinearInPlace RenameAxes contract"
    " variance_scaling_initializer xavier_normal_initializer"
    " xavier_uniform_initializer constant_initializer zero_initializer",
    "parameters": "ParameterLike derive_param_key make_parameter assert_no_parameter_slots",
    "standardization": "LayerNorm Standardize RMSLayerNorm RMSStandardize",
}


def _params(entries: list[tuple[str, str]]) -> list[object]:
  return [
      pytest.param(
          t,
          s,
          id=t,
          marks=[pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[t])]
          if t in KNOWN_MISMATCHES
          else [],
      )
      for t, s in entries
  ]


def _class_params(specs: list[h.ClassSpec]) -> list[object]:
  return [
      pytest.param(
          c,
          id=c.target,
          marks=[pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[c.target])]
          if c.target in KNOWN_MISMATCHES
          else [],
      )
      for c in specs
  ]


@pytest.mark.parametrize("target,expected", _params(CALLABLES))
def test_callable_signature(target: str, expected: str) -> None:
  h.check(h.callable_problems(target, expected), f"{target}{expected}", lambda: h.describe(target))


@pytest.mark.parametrize("spec", _class_params(CLASSES))
def test_class_structure(spec: h.ClassSpec) -> None:
  h.check(h.class_problems(spec), spec.target, lambda: h.describe(spec.target))


def test_xavier_initializers_are_partials_of_variance_scaling() -> None:
  from penzai.nn import linear_and_affine as la

  for obj, distribution in (
      (la.xavier_uniform_initializer, "uniform"),
      (la.xavier_normal_initializer, "normal"),
  ):
    assert isinstance(obj, functools.partial)
    assert obj.func is la.variance_scaling_initializer
    assert obj.args == ()
    assert obj.keywords == {"scale": 1.0, "mode": "fan_avg", "distribution": distribution}


def test_checked_sequential_annotations_always_collapse() -> None:
  fields = {f.name: f for f in dataclasses.fields(pz.nn.CheckedSequential)}
  for name in ("input_like", "output_like"):
    assert fields[name].metadata.get("treescope_always_collapse") is True, name


def test_layer_stack_var_behavior_members() -> None:
  members = [(m.name, m.value) for m in pz.nn.LayerStackVarBehavior]
  assert members == [("SHARED", 1), ("PER_LAYER", 2)]


def test_pz_nn_exact_names() -> None:
  import importlib

  public = {n for n in dir(pz.nn) if not n.startswith("_")}
  expected = {n for names in PZ_NN_NAMES.values() for n in names.split()}
  assert public == expected
  for module, names in PZ_NN_NAMES.items():
    mod = importlib.import_module(f"penzai.nn.{module}")
    for name in names.split():
      assert getattr(pz.nn, name) is getattr(mod, name), name
  from penzai.nn import linear_and_affine as la

  assert not hasattr(pz.nn, "check_unique_axis_names_for_initializer")
  assert la.NamedArray is pz.nx.NamedArray
  assert la.Parameter is pz.Parameter and la.ParameterValue is pz.ParameterValue


def test_embedding_table_is_not_a_layer() -> None:
  assert not issubclass(pz.nn.EmbeddingTable, pz.nn.Layer)
  assert all("__call__" not in vars(k) for k in pz.nn.EmbeddingTable.__mro__)


FINAL_MEMBERS = [
    f"{LAYER}.stateless_call",
    f"{SEQ}.__call__",
    f"{N}.grouping:CheckedSequential.__call__",
    f"{N}.grouping:Identity.__call__",
]


@pytest.mark.parametrize("target", FINAL_MEMBERS)
def test_member_is_typing_final(target: str) -> None:
  assert h.is_final(target), f"{target} should be decorated with @typing.final"


def _all_layer_classes() -> list[type]:
  import importlib
  import pkgutil

  import penzai.models
  import penzai.nn
  import penzai.toolshed

  for package in (penzai.nn, penzai.models, penzai.toolshed):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
      if info.name.endswith("patch_ipdb"):
        continue  # needs IPython
      importlib.import_module(info.name)
  seen: list[type] = []
  stack = [pz.nn.Layer]
  while stack:
    cls = stack.pop()
    for sub in cls.__subclasses__():
      if sub not in seen:
        seen.append(sub)
        stack.append(sub)
  prefixes = ("penzai.nn.", "penzai.models.", "penzai.toolshed.")
  return sorted(
      (c for c in seen if c.__module__.startswith(prefixes)), key=lambda c: c.__qualname__
  )


def test_every_layer_call_takes_one_main_input_and_side_inputs() -> None:
  """nn.md 0.2: `layer(argument, **side_inputs)`, unknown side inputs ignored."""
  import inspect

  P = inspect.Parameter
  problems = []
  classes = _all_layer_classes()
  assert len(classes) >= 40
  for cls in classes:
    params = list(inspect.signature(cls.__call__).parameters.values())[1:]
    positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    required_positional = [p for p in positional if p.default is P.empty]
    required_keyword = [
        p for p in params if p.kind == P.KEYWORD_ONLY and p.default is P.empty
    ]
    has_var_keyword = any(p.kind == P.VAR_KEYWORD for p in params)
    if len(required_positional) != 1 or required_keyword or not has_var_keyword:
      problems.append(f"{cls.__module__}.{cls.__qualname__}.__call__{inspect.signature(cls.__call__)}")
  assert not problems, "\n".join(problems)
