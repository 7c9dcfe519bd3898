"""Reference conformance: signatures, fields and bases in `penzai.toolshed` (toolshed.md)."""

from __future__ import annotations

import importlib.util
from typing import Any, Protocol

import pytest

import refconf_harness as h

T = "penzai.toolshed"
LAYER = "penzai.nn.layer:Layer"
STRUCT = "penzai.core.struct:Struct"
SEQ = "penzai.nn.grouping:Sequential"
CALL_POSONLY = "(self, argument, /, **side_inputs)"

CALLABLES: list[tuple[str, str]] = [
    # save_intermediates
    (f"{T}.save_intermediates:SaveIntermediate.__call__", "(self, value, /, **_unused_side_inputs)"),
    (
        f"{T}.save_intermediates:SaveIntermediateShape.__call__",
        "(self, value, /, **_unused_side_inputs)",
    ),
    (
        f"{T}.save_intermediates:saving_all_intermediates",
        "(model: pz.nn.Layer, intermediates_group: str | None = 'intermediates',"
        " shapes_only: bool = False) -> pz.nn.Layer",
    ),
    # isolate_submodel
    (f"{T}.isolate_submodel:IsolationCapturer.__call__", CALL_POSONLY),
    (
        f"{T}.isolate_submodel:call_and_extract_submodel",
        "(submodel_selection: pz.Selection[pz.nn.Layer], argument: Any, /,"
        " **side_inputs) -> IsolatedSubmodel | list[IsolatedSubmodel]",
    ),
    # model_rewiring
    (f"{T}.model_rewiring:KnockOutAttentionHeads.__call__", "(self, attn_weights, **_)"),
    (f"{T}.model_rewiring:RewireComputationPaths.path_matrix", "(self) -> pz.nx.NamedArray"),
    (f"{T}.model_rewiring:RewireComputationPaths.__call__", "(self, inputs, **_)"),
    (f"{T}.model_rewiring:LinearizeAndAdjust.__call__", "(self, inputs, **side_inputs)"),
    # gradient_checkpointing
    (
        f"{T}.gradient_checkpointing:_flat_stateless_call",
        "(body, state_var_values, argument, side_inputs)",
    ),
    (f"{T}.gradient_checkpointing:Checkpointed.__call__", CALL_POSONLY),
    # basic_training
    (
        f"{T}.basic_training:LossFunction.__call__",
        "(self, *, model: ModelPyTree, state: LossStatePyTree, rng: PRNGKeyArray,"
        " **kwargs) -> tuple[jax.Array, LossStatePyTree, AuxOutPyTree]",
    ),
    (
        f"{T}.basic_training:_stateful_trainer_step",
        "(root_rng, state: InternalTrainerState, stateless_model,"
        " trainable_params: tuple[ParameterValue, ...], frozen_params:"
        " tuple[ParameterValue, ...], state_vars: tuple[StateVariableValue, ...],"
        " loss_fn, optimizer_def, kwargs: dict[str, Any])",
    ),
    (
        f"{T}.basic_training:StatefulTrainer.build",
        "(cls, root_rng: PRNGKeyArray, model: ModelPyTree, optimizer_def:"
        " optax.GradientTransformation, loss_fn: LossFunction,"
        " initial_loss_fn_state: LossStatePyTree = None, jit: bool = True,"
        " donate_states: bool = False) -> StatefulTrainer",
    ),
    (f"{T}.basic_training:StatefulTrainer.step", "(self, **kwargs) -> AuxOutPyTree"),
    # lora
    (
        f"{T}.lora:LowRankAdapter.from_linear",
        "(cls, linear: pz.nn.Linear, name: str, init_base_rng: jax.Array | None,"
        " rank: int, lowrank_axis: str = 'lowrank') -> LowRankAdapter",
    ),
    (
        f"{T}.lora:loraify_linears_in_selection",
        "(selection: pz.Selection[Any], rank: int, init_base_rng: jax.Array | None) -> Any",
    ),
    # jit_wrapper
    (f"{T}.jit_wrapper:_flat_jit_call_layer", "(layer, arg, side_inputs)"),
    (f"{T}.jit_wrapper:Jitted.__call__", CALL_POSONLY),
    # sharding_util
    (
        f"{T}.sharding_util:name_to_name_sharding",
        "(tree: PyTreeOfNamedArrays, mesh: jax.sharding.Mesh,"
        " axis_name_to_mesh_name: dict[AxisName, str | tuple[str, ...]] | None ="
        " None, ignore_unnamed_arrays: bool = False, as_shape_dtype_struct: bool"
        " = False) -> PyTreeOfShardings",
    ),
    (
        f"{T}.sharding_util:name_to_name_device_put",
        "(tree: PyTreeOfNamedArrays, mesh: jax.sharding.Mesh,"
        " axis_name_to_mesh_name: dict[str, str | tuple[str, ...]] | None = None)"
        " -> PyTreeOfNamedArrays",
    ),
    (
        f"{T}.sharding_util:sharded_init",
        "(initializer: Callable[..., Any], *init_args, mesh: jax.sharding.Mesh,"
        " axis_name_to_mesh_name: dict[str, str | tuple[str, ...]] | None = None,"
        " **init_kwargs) -> Any",
    ),
    (f"{T}.sharding_util:ConstrainSharding.__call__", "(self, tree, **_)"),
    (f"{T}.sharding_util:ConstrainShardingByName.__call__", "(self, tree, **_)"),
    # auto_nmap
    (f"{T}.auto_nmap:AutoNmapModuleWrapper.__getattr__", "(self, name: str)"),
    (f"{T}.auto_nmap:wrap_module", "(module: types.ModuleType) -> AutoNmapModuleWrapper"),
    # token_visualization
    (f"{T}.token_visualization:SentencePieceProcessorLike.GetPieceSize", "(self) -> int"),
    (f"{T}.token_visualization:SentencePieceProcessorLike.IdToPiece", "(self, id: int) -> str"),
    (f"{T}.token_visualization:SentencePieceProcessorLike.IsControl", "(self, id: int) -> bool"),
    (
        f"{T}.token_visualization:_fixup_tokens_and_name_order",
        "(token_arrays, axis_name_order=None)",
    ),
    (
        f"{T}.token_visualization:show_token_array",
        "(tokens: NamedArrayBase | jax.Array | np.ndarray, vocab:"
        " SentencePieceProcessorLike, axis_name_order: Sequence[str] | None = None)",
    ),
    (
        f"{T}.token_visualization:show_token_scores",
        "(tokens, scores, vocab: SentencePieceProcessorLike, axis_name_order:"
        " Sequence[str] | None = None, vmax: float | None = None)",
    ),
    # unflaxify
    (f"{T}.unflaxify:ArgsAndKwargs.capture", "(cls, *args, **kwargs) -> ArgsAndKwargs"),
    (
        f"{T}.unflaxify:InterceptedFlaxModuleMethod.__call__",
        "(self, args_and_kwargs: ArgsAndKwargs, random_streams: dict[str,"
        " pz.RandomStream] | None = None, **side_inputs) -> Any",
    ),
    (f"{T}.unflaxify:InterceptedFlaxModuleMethod.treescope_color", "(self)"),
    (
        f"{T}.unflaxify:unflaxify_apply",
        "(module: flax.linen.Module, variables: flax.typing.VariableDict,"
        " *dummy_args, rngs: flax.typing.PRNGKey | flax.typing.RNGSequences |"
        " None = None, method: Callable[..., Any] | str | None = None, mutable:"
        " flax.core.scope.CollectionFilter = False, **dummy_kwargs) ->"
        " InterceptedFlaxModuleMethod",
    ),
    # patch_ipdb (needs IPython; skipped when it is not installed)
    (f"{T}.patch_ipdb:displayhook_with_ipython", "(self, obj)"),
    (f"{T}.patch_ipdb:patch_ipdb", "(force: bool = False)"),
    (f"{T}.patch_ipdb:unpatch_ipdb", "()"),
]


def _layer(target: str, fields: str, *bases: str, implicit: bool | None = None) -> h.ClassSpec:
  return h.ClassSpec(target, bases=(LAYER, *bases), fields=fields, pytree=True, implicit=implicit)


CLASSES: list[h.ClassSpec] = [
    _layer(f"{T}.save_intermediates:SaveIntermediate", "(saved = <factory>)"),
    _layer(f"{T}.save_intermediates:SaveIntermediateShape", "(saved = <factory>)"),
    h.ClassSpec(
        f"{T}.isolate_submodel:IsolatedSubmodel",
        bases=(STRUCT,),
        fields=(
            "(submodel, saved_arg, saved_side_inputs, saved_output,"
            " initial_var_values, final_var_values)"
        ),
        pytree=True,
    ),
    _layer(f"{T}.isolate_submodel:IsolationCapturer", "(saved_calls, wrapped)"),
    _layer(f"{T}.model_rewiring:KnockOutAttentionHeads", "(head_mask)"),
    h.ClassSpec(
        f"{T}.model_rewiring:From",
        fields="(source, weight = 1.0)",
        dataclass_params=(("frozen", True),),
    ),
    _layer(
        f"{T}.model_rewiring:RewireComputationPaths",
        "(worlds_axis: static, world_ordering: static, taking: static)",
    ),
    _layer(f"{T}.model_rewiring:LinearizeAndAdjust", "(linearize_around, evaluate_at, target)"),
    _layer(f"{T}.gradient_checkpointing:Checkpointed", "(body, policy = None)"),
    h.ClassSpec(f"{T}.basic_training:LossFunction", bases=(Protocol,)),
    h.ClassSpec(
        f"{T}.basic_training:InternalTrainerState",
        bases=(STRUCT,),
        fields="(step, opt_state, loss_fn_state)",
        pytree=True,
    ),
    h.ClassSpec(
        f"{T}.basic_training:StatefulTrainer",
        bases=(STRUCT,),
        fields=(
            "(root_rng, model, state, optimizer_def: static, loss_fn: static,"
            " step_fn: static)"
        ),
        pytree=True,
    ),
    _layer(f"{T}.lora:LowRankAdapter", "(sublayers)", SEQ, implicit=True),
    _layer(f"{T}.jit_wrapper:Jitted", "(body)"),
    _layer(f"{T}.sharding_util:ConstrainSharding", "(sharding: static)"),
    _layer(
        f"{T}.sharding_util:ConstrainShardingByName",
        "(mesh: static, axis_name_to_mesh_name: static = None)",
    ),
    h.ClassSpec(f"{T}.auto_nmap:AutoNmapModuleWrapper", fields="(_module)"),
    h.ClassSpec(f"{T}.token_visualization:SentencePieceProcessorLike", bases=(Protocol,)),
    h.ClassSpec(
        f"{T}.unflaxify:ArgsAndKwargs", bases=(STRUCT,), fields="(args, kwargs)", pytree=True
    ),
    h.ClassSpec(
        f"{T}.unflaxify:InterceptedFlaxScopeData",
        bases=(STRUCT,),
        fields="(parameters, variables, immutable_variables, rng_names: static)",
        pytree=True,
    ),
    h.ClassSpec(
        f"{T}.unflaxify:FlaxVarLabel",
        bases=("penzai.core.auto_order_types:AutoOrderedAcrossTypes",),
        fields="(collection, name)",
        dataclass_params=(("frozen", True),),
    ),
    _layer(
        f"{T}.unflaxify:InterceptedFlaxModuleMethod",
        "(module: static, method_name: static, scope_data, submodule_calls)",
    ),
]

KNOWN_MISMATCHES: dict[str, str] = {}

_HAS_IPYTHON = importlib.util.find_spec("IPython") is not None


def _marks(target: str) -> list[pytest.MarkDecorator]:
  marks = []
  if target in KNOWN_MISMATCHES:
    marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[target]))
  if ".patch_ipdb:" in target and not _HAS_IPYTHON:
    marks.append(pytest.mark.skip(reason="patch_ipdb imports IPython, which is not installed"))
  return marks


@pytest.mark.parametrize(
    "target,expected", [pytest.param(t, s, id=t, marks=_marks(t)) for t, s in CALLABLES]
)
def test_callable_signature(target: str, expected: str) -> None:
  h.check(h.callable_problems(target, expected), f"{target}{expected}", lambda: h.describe(target))


@pytest.mark.parametrize(
    "spec", [pytest.param(c, id=c.target, marks=_marks(c.target)) for c in CLASSES]
)
def test_class_structure(spec: h.ClassSpec) -> None:
  h.check(h.class_problems(spec), spec.target, lambda: h.describe(spec.target))


def test_save_intermediate_default_is_fresh_state_variable() -> None:
  from penzai import pz
  from penzai.toolshed import save_intermediates

  a = save_intermediates.SaveIntermediate()
  b = save_intermediates.SaveIntermediate()
  assert isinstance(a.saved, pz.StateVariable)
  assert a.saved is not b.saved
  assert a.saved.value is None


def test_type_aliases() -> None:
  import jax

  from penzai.toolshed import basic_training, sharding_util

  for name in ("ModelPyTree", "AuxOutPyTree", "LossStatePyTree", "OptimizerStatePyTree"):
    assert getattr(basic_training, name) is Any, name
  assert basic_training.PRNGKeyArray is jax.Array
  for name in ("PyTreeOfArrays", "PyTreeOfNamedArrays", "PyTreeOfShardings"):
    assert getattr(sharding_util, name) is Any, name


@pytest.mark.skipif(not _HAS_IPYTHON, reason="patch_ipdb imports IPython")
def test_patch_ipdb_global() -> None:
  from penzai.toolshed import patch_ipdb

  assert patch_ipdb.old_displayhook is None
