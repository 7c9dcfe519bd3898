"""Reference conformance: signatures, fields and bases in `penzai.core` (core.md).

Expected signatures are copied from /work/shared/reference/core.md (annotations
are not compared). Every entry is checked mechanically by `refconf_harness`.
"""

from __future__ import annotations

import abc
import collections.abc
import inspect
from typing import Any, Generic

import jax
import pytest
import treescope

from penzai import pz  # noqa: F401  (imports every core module)
import refconf_harness as h

S = "penzai.core.struct"
TU = "penzai.core.tree_util"
SEL = "penzai.core.selectors"
NX = "penzai.core.named_axes"
CHK = "penzai.core.shapecheck"
VAR = "penzai.core.variables"
TSH = "penzai.core._treescope_handlers"
COMPAT = "penzai.treescope._compatibility_setup"

_STRUCT = f"{S}:Struct"
_TREESCOPE_REPR = "(self, path: str | None, subtree_renderer: Any)"

CALLABLES: list[tuple[str, str]] = [
    # --- struct -------------------------------------------------------------
    (f"{S}:is_pytree_dataclass_type", "(cls: type[Any]) -> bool"),
    (
        f"{S}:pytree_dataclass",
        "(cls: type[Any] | None = None, /, *, has_implicitly_inherited_fields:"
        " bool = False, use_mutable_proxy_in_init: bool = True,"
        " overwrite_parent_init: bool = False, init: bool = True, repr: bool |"
        " Literal['auto'] = 'auto', eq: bool = True, order: bool = False,"
        " match_args: bool = False, kw_only: bool = False) -> type[Any] |"
        " Callable[[type[Any]], type[Any]]",
    ),
    (f"{S}:is_pytree_node_field", "(field: dataclasses.Field[Any]) -> bool"),
    (f"{S}:AbstractStructMetaclass.__call__", "(cls, *args, **kwargs)"),
    (f"{S}:Struct.from_attributes", "(cls: Type[T], **field_values) -> T"),
    (f"{S}:Struct.attributes_dict", "(self) -> dict[str, Any]"),
    (f"{S}:Struct.select", "(self) -> selectors.Selection[Struct]"),
    (f"{S}:Struct.key_for_field", "(self, field_name: str) -> Hashable"),
    (f"{S}:Struct.tree_flatten_with_keys", "(self)"),
    (f"{S}:Struct.tree_flatten", "(self)"),
    (f"{S}:Struct.tree_unflatten", "(cls, aux_data: Any, children: Sequence[Any]) -> Struct"),
    (f"{S}:Struct.treescope_color", "(self) -> str | tuple[str, str]"),
    (f"{S}:Struct.__repr__", "(self)"),
    (f"{S}:Struct._repr_pretty_", "(self, p, cycle)"),
    (f"{S}:Struct.__treescope_repr__", _TREESCOPE_REPR),
    # --- tree_util ----------------------------------------------------------
    (
        f"{TU}:tree_flatten_exactly_one_level",
        "(tree: Any) -> Optional[tuple[list[tuple[Any, Any]], PyTreeDef]]",
    ),
    (f"{TU}:pretty_keystr", "(keypath: tuple[Any, ...], tree: Any) -> str"),
    # --- syntactic_sugar, auto_order_types, partitioning --------------------
    ("penzai.core.syntactic_sugar:SliceLike.__getitem__", "(self, indexer)"),
    ("penzai.core.auto_order_types:AutoOrderedAcrossTypes._ordering_tuple", "(self)"),
    ("penzai.core.auto_order_types:AutoOrderedAcrossTypes.__lt__", "(self, other)"),
    ("penzai.core.auto_order_types:AutoOrderedAcrossTypes.__le__", "(self, other)"),
    ("penzai.core.auto_order_types:AutoOrderedAcrossTypes.__gt__", "(self, other)"),
    ("penzai.core.auto_order_types:AutoOrderedAcrossTypes.__ge__", "(self, other)"),
    ("penzai.core.partitioning:combine", "(*partitions: Any) -> Any"),
    ("penzai.core.partitioning:NotInThisPartition.treescope_color", "(self)"),
    # --- selectors ----------------------------------------------------------
    (f"{SEL}:_shift_negative_indices", "(indices: Iterable[int], shift: int) -> tuple[int, ...]"),
    (f"{SEL}:select", "(tree: Any) -> Selection"),
    (f"{SEL}:Selection.count", "(self) -> int"),
    (f"{SEL}:Selection.__len__", "(self) -> int"),
    (f"{SEL}:Selection.is_empty", "(self) -> bool"),
    (f"{SEL}:Selection.deselect", "(self) -> Any"),
    (f"{SEL}:Selection.get", "(self) -> SelectedSubtree"),
    (f"{SEL}:Selection.get_keypaths", "(self) -> tuple[KeyPath, ...]"),
    (f"{SEL}:Selection.get_by_path", "(self)"),
    (f"{SEL}:Selection.get_sequence", "(self) -> tuple[SelectedSubtree, ...]"),
    (
        f"{SEL}:Selection.apply",
        "(self, fn: Callable[..., Any], *, with_keypath: bool = False,"
        " keep_selected: bool = False) -> Any",
    ),
    (f"{SEL}:Selection.set", "(self, replacement: Any) -> Any"),
    (
        f"{SEL}:Selection.set_by_path",
        "(self, replacer: Mapping[KeyPath, Any] | Callable[[KeyPath], Any]) -> Any",
    ),
    (
        f"{SEL}:Selection.select_and_set_by_path",
        "(self, replacements_by_path: dict[KeyPath, Any]) -> Any",
    ),
    (f"{SEL}:Selection.set_sequence", "(self, replacements: Iterable[Any]) -> Any"),
    (f"{SEL}:Selection.flatten_selected_selections", "(self) -> Selection"),
    (
        f"{SEL}:Selection.refine",
        "(self, selector_fn: Callable[[Any], Selection[OtherSubtree]]) -> Selection[OtherSubtree]",
    ),
    (
        f"{SEL}:Selection.at",
        "(self, accessor_fn: Callable[[SelectedSubtree], Any | Collection[Any]],"
        " multiple: bool | None = None) -> Selection",
    ),
    (f"{SEL}:Selection.at_pytree_leaves", "(self) -> Selection"),
    (f"{SEL}:Selection.at_children", "(self) -> Selection"),
    (
        f"{SEL}:Selection.where",
        "(self, filter_fn: Callable[..., bool], *, with_keypath: bool = False) -> Selection",
    ),
    (
        f"{SEL}:Selection.at_subtrees_where",
        "(self, filter_fn: Callable[..., bool], *, with_keypath: bool = False,"
        " absolute_keypath: bool = False, innermost: bool = False) -> Selection",
    ),
    (
        f"{SEL}:Selection.at_instances_of",
        "(self, cls: type[OtherSubtree] | tuple[type[OtherSubtree], ...],"
        " innermost: bool = False) -> Selection[OtherSubtree]",
    ),
    (f"{SEL}:Selection.at_equal_to", "(self, template: OtherSubtree) -> Selection[OtherSubtree]"),
    (f"{SEL}:Selection.partition", "(self, at_leaves: bool = False) -> tuple[Any, Any]"),
    (f"{SEL}:Selection.at_keypaths", "(self, keypaths: Collection[KeyPath]) -> Selection"),
    (f"{SEL}:Selection.invert", "(self) -> Selection"),
    (f"{SEL}:Selection.at_childless", "(self) -> Selection"),
    (
        f"{SEL}:Selection.apply_and_inline",
        "(self, fn: Callable[..., Iterable[Any]], *, with_keypath: bool = False) -> Any",
    ),
    (f"{SEL}:Selection.remove_from_parent", "(self) -> Any"),
    (f"{SEL}:Selection.insert_after", "(self, value: Any, and_select: bool = False) -> Any"),
    (f"{SEL}:Selection.insert_before", "(self, value: Any, and_select: bool = False) -> Any"),
    (f"{SEL}:Selection.show_selection", "(self, ignore_exceptions: bool = False)"),
    (f"{SEL}:Selection.show_value", "(self, ignore_exceptions: bool = False)"),
    (f"{SEL}:Selection.assert_count_is", "(self, count: int) -> Selection"),
    (f"{SEL}:Selection.pick_nth_selected", "(self, n: int | Sequence[int]) -> Selection"),
    (
        f"{SEL}:Selection.apply_with_selected_index",
        "(self, fn: Callable[[int, SelectedSubtree], Any], keep_selected: bool ="
        " False) -> Any | Selection",
    ),
    (f"{SEL}:Selection.__treescope_root_repr__", "(self)"),
    # --- named_axes ---------------------------------------------------------
    (f"{NX}:TmpPosAxisMarker", "()"),
    (f"{NX}:NamedArrayBase.dtype", "property"),
    (f"{NX}:NamedArrayBase.named_shape", "property"),
    (f"{NX}:NamedArrayBase.positional_shape", "property"),
    (f"{NX}:NamedArrayBase.at", "property"),
    (f"{NX}:NamedArrayBase.check_valid", "(self) -> None"),
    (f"{NX}:NamedArrayBase.unwrap", "(self, *names: AxisName) -> jax.Array"),
    (f"{NX}:NamedArrayBase.with_positional_prefix", "(self) -> NamedArray"),
    (f"{NX}:NamedArrayBase.as_namedarrayview", "(self) -> NamedArrayView"),
    (f"{NX}:NamedArrayBase.untag", "(self, *axis_order: AxisName) -> NamedArray | NamedArrayView"),
    (f"{NX}:NamedArrayBase.tag", "(self, *names) -> NamedArray"),
    (f"{NX}:NamedArrayBase.untag_prefix", "(self, *axis_order: AxisName)"),
    (f"{NX}:NamedArrayBase.tag_prefix", "(self, *axis_order: AxisName)"),
    (f"{NX}:NamedArrayBase.order_as", "(self, *axis_order: AxisName) -> NamedArray"),
    (f"{NX}:NamedArrayBase.order_like", "(self, other: NamedArray | NamedArrayView)"),
    (
        f"{NX}:NamedArrayBase.broadcast_to",
        "(self, positional_shape: Sequence[int] = (), named_shape:"
        " Mapping[AxisName, int] | None = None) -> NamedArrayBase",
    ),
    (
        f"{NX}:NamedArrayBase.broadcast_like",
        "(self, other: NamedArrayBase | jax.typing.ArrayLike) -> NamedArrayBase",
    ),
    (f"{NX}:NamedArrayBase.canonicalize", "(self) -> NamedArray"),
    (f"{NX}:NamedArrayBase.__getitem__", "(self, indexer)"),
    (f"{NX}:NamedArrayBase.__iter__", "(self)"),
    (f"{NX}:NamedArrayBase.__treescope_repr__", _TREESCOPE_REPR),
    (f"{NX}:NamedArrayBase.__treescope_ndarray_adapter__", "(self)"),
    (f"{NX}:NamedArray.wrap", "(cls, array: jax.typing.ArrayLike, *names: AxisName) -> NamedArray"),
    (f"{NX}:_IndexUpdateRef.get", "(self, **kwargs) -> NamedArrayBase"),
    *[
        (f"{NX}:_IndexUpdateRef.{op}", "(self, values, /, **kwargs)")
        for op in (
            "set", "add", "multiply", "mul", "divide", "power", "min", "max",
            "apply", "div",
        )
    ],
    (f"{NX}:nmap", "(fun: Callable[..., Any]) -> Callable[..., Any]"),
    (f"{NX}:wrap", "(array: jax.typing.ArrayLike, *names: AxisName) -> NamedArray"),
    (f"{NX}:is_namedarray", "(value) -> typing.TypeGuard[NamedArrayBase]"),
    (
        f"{NX}:full",
        "(named_shape: Mapping[AxisName, int], fill_value: jax.typing.ArrayLike,"
        " dtype: np.DTypeLike | None = None) -> NamedArray",
    ),
    (f"{NX}:zeros", "(named_shape: Mapping[AxisName, int], dtype: np.DTypeLike | None = None) -> NamedArray"),
    (f"{NX}:ones", "(named_shape: Mapping[AxisName, int], dtype: np.DTypeLike | None = None) -> NamedArray"),
    (
        f"{NX}:arange",
        "(name: str, start: int, stop: int | None = None, step: int | None ="
        " None, dtype: jax.typing.DTypeLike | None = None) -> NamedArray",
    ),
    (f"{NX}:random_split", "(key: jax.Array | NamedArrayBase, named_shape: Mapping[AxisName, int] | Sequence[tuple[AxisName, int]])"),
    (f"{NX}:concatenate", "(arrays: Sequence[NamedArrayBase], axis_name: AxisName)"),
    (f"{NX}:stack", "(arrays: Sequence[NamedArrayBase], axis_name: AxisName)"),
    (f"{NX}:unstack", "(array: NamedArrayBase, axis_name: AxisName)"),
    (f"{NX}:order_like", "(value_tree: Any, reference_tree: Any)"),
    (f"{NX}:scan", "(f: Callable[[Any, Any], Any], axis: AxisName, init, xs=None, **scan_kwargs) -> Any"),
    # --- shapecheck ---------------------------------------------------------
    (f"{CHK}:var", "(name: str) -> DimVar"),
    (
        f"{CHK}:vars_for_axes",
        "(var_name: str, axis_names_or_specs: Collection[str] | Mapping[str, int"
        " | None]) -> dict[str, DimVar | KnownDim]",
    ),
    (f"{CHK}:ArraySpec.positional_shape", "property"),
    (f"{CHK}:ArraySpec.floating_named", "(cls, named_shape) -> ArraySpec"),
    (f"{CHK}:ArraySpec.into_pytree", "(self)"),
    (
        f"{CHK}:check_structure",
        "(value: Any, pattern: StructureAnnotation, known_vars: Mapping[str, int"
        " | tuple[int, ...] | dict[named_axes.AxisName, int]] | None = None,"
        " error_prefix: str = '') -> MatchResult",
    ),
    (f"{CHK}:DimensionVariableSubstitution.is_empty", "(self) -> bool"),
    (f"{CHK}:get_dimension_variables", "(structure: StructureAnnotation) -> DimensionVariableSubstitution"),
    (
        f"{CHK}:full_substitute_dimension_variables",
        "(structure: StructureAnnotation, substitution: DimensionVariableSubstitution) -> Any",
    ),
    (f"{CHK}:as_array_structure", "(tree: Any) -> StructureAnnotation"),
    # --- variables ----------------------------------------------------------
    (f"{VAR}:AbstractVariable.freeze", "(self)"),
    (f"{VAR}:AbstractVariable.get_slot", "(self)"),
    (f"{VAR}:AbstractVariable.update", "(self, new_frozen_value)"),
    (f"{VAR}:AbstractVariable.__get_state_as_jax_pytree__", "(self)"),
    (f"{VAR}:AbstractVariable.__set_state_from_jax_pytree__", "(self, value)"),
    (f"{VAR}:AbstractVariableValue.unfreeze_as_copy", "(self)"),
    (f"{VAR}:AbstractVariableValue.get_slot", "(self)"),
    (f"{VAR}:AbstractVariableValue.__jax_pytree_state_to_new_variable__", "(self)"),
    (
        f"{VAR}:LabeledVariable.__init__",
        "(self, *, label: VariableLabel, value: T, metadata: dict[Any, Any] | None = None)",
    ),
    (f"{VAR}:LabeledVariable.value", "property"),
    (f"{VAR}:LabeledVariable.set_value", "(self, new_val: T)"),
    (f"{VAR}:LabeledVariable.update", "(self, new_frozen_value: LabeledVariableValue)"),
    (f"{VAR}:LabeledVariable.treescope_color", "(self) -> str | tuple[str, str]"),
    (f"{VAR}:LabeledVariable.__repr__", "(self)"),
    (f"{VAR}:LabeledVariable.__treescope_repr__", _TREESCOPE_REPR),
    (f"{VAR}:Parameter", "(*, label, value, metadata=None)"),
    (f"{VAR}:Parameter.freeze", "(self)"),
    (f"{VAR}:Parameter.get_slot", "(self)"),
    (f"{VAR}:Parameter.treescope_color", "(self)"),
    (f"{VAR}:ParameterValue.unfreeze_as_copy", "(self)"),
    (f"{VAR}:ParameterValue.get_slot", "(self)"),
    (f"{VAR}:ParameterValue.treescope_color", "(self)"),
    (f"{VAR}:ParameterSlot.value", "property"),
    (f"{VAR}:ParameterSlot.treescope_color", "(self)"),
    (f"{VAR}:scoped_auto_state_var_labels", "(group: Hashable = None)"),
    (
        f"{VAR}:StateVariable",
        "(value: T, *, label: VariableLabel | None = None, metadata: dict[Any, Any] | None = None)",
    ),
    (
        f"{VAR}:StateVariable.__init__",
        "(self, value: T, *, label: VariableLabel | None = None, metadata:"
        " dict[Any, Any] | None = None)",
    ),
    (f"{VAR}:StateVariable.freeze", "(self)"),
    (f"{VAR}:StateVariable.get_slot", "(self)"),
    (f"{VAR}:StateVariable.treescope_color", "(self)"),
    (f"{VAR}:StateVariableValue.unfreeze_as_copy", "(self)"),
    (f"{VAR}:StateVariableValue.get_slot", "(self)"),
    (f"{VAR}:StateVariableValue.treescope_color", "(self)"),
    (f"{VAR}:StateVariableSlot.value", "property"),
    (f"{VAR}:StateVariableSlot.treescope_color", "(self)"),
    (
        f"{VAR}:unbind_variables",
        "(tree: Any, predicate: Callable[[AbstractVariable], bool] | None = None,"
        " freeze: bool = False)",
    ),
    (
        f"{VAR}:bind_variables",
        "(tree: Any, variables: Iterable[AbstractVariable | AbstractVariableValue],"
        " allow_unused: bool = False, unfreeze_as_copy: bool = False) -> Any",
    ),
    (f"{VAR}:freeze_variables", "(tree: Any, predicate: Callable[[AbstractVariable], bool] | None = None) -> Any"),
    (f"{VAR}:unbind_params", "(tree, predicate: Callable[[Parameter], bool] | None = None, freeze: bool = False)"),
    (f"{VAR}:unbind_state_vars", "(tree, predicate: Callable[[StateVariable], bool] | None = None, freeze: bool = False)"),
    (f"{VAR}:freeze_params", "(tree, predicate: Callable[[Parameter], bool] | None = None) -> Any"),
    (f"{VAR}:freeze_state_vars", "(tree, predicate: Callable[[StateVariable], bool] | None = None) -> Any"),
    (f"{VAR}:variable_jit", "(fun, *, donate_variables: bool = False, **jit_kwargs)"),
    # --- random_stream ------------------------------------------------------
    (
        "penzai.core.random_stream:RandomStream.from_base_key",
        "(cls, base_key: jax.Array, offset_label: variables.VariableLabel ="
        " 'random_stream_offset') -> RandomStream",
    ),
    ("penzai.core.random_stream:RandomStream.next_key", "(self) -> jax.Array"),
    # --- treescope handlers -------------------------------------------------
    (f"{TSH}.struct_handler:render_struct_constructor", "(node: Struct)"),
    (f"{TSH}.struct_handler:render_short_struct_summary", "(the_struct: Struct)"),
    (f"{TSH}.struct_handler:struct_attr_style_fn_for_fields", "(fields)"),
    (f"{TSH}.struct_handler:handle_structs", "(node, path, subtree_renderer)"),
    (
        f"{TSH}.named_axes_handlers:named_array_and_contained_type_summary",
        "(named_array, inspect_device_data: bool = True) -> tuple[str, str]",
    ),
    (f"{TSH}.named_axes_handlers:handle_named_arrays", "(node, path, subtree_renderer)"),
    (f"{TSH}.named_axes_handlers:NamedArrayAdapter.get_axis_info_for_array_data", "(self, array)"),
    (
        f"{TSH}.named_axes_handlers:NamedArrayAdapter.get_array_data_with_truncation",
        "(self, array, mask, edge_items_per_axis)",
    ),
    (f"{TSH}.named_axes_handlers:NamedArrayAdapter.get_array_summary", "(self, array, fast)"),
    (f"{TSH}.named_axes_handlers:NamedArrayAdapter.get_numpy_dtype", "(self, array)"),
    (f"{TSH}.named_axes_handlers:NamedArrayAdapter.get_sharding_info_for_array_data", "(self, array)"),
    (f"{TSH}.named_axes_handlers:NamedArrayAdapter.should_autovisualize", "(self, array)"),
    (f"{TSH}.shapecheck_handlers:handle_arraystructures", "(node, path, subtree_renderer)"),
    (
        f"{TSH}.selection_rendering:render_selection_to_foldable_representation",
        "(selection, visible_selection: bool = True, ignore_exceptions: bool = False)",
    ),
    (
        f"{TSH}.selection_rendering:display_selection_streaming",
        "(selection, visible_selection: bool = True, ignore_exceptions: bool = False)",
    ),
    (f"{TSH}.selection_rendering:is_rendering_a_selection", "() -> bool"),
    # --- rendering helpers re-exported by pz / pz.ts ------------------------
    (f"{COMPAT}:show", "(*args, wrap: bool = False, space_separated: bool = True)"),
    (f"{COMPAT}:display", "(value: Any, ignore_exceptions: bool = False, roundtrip_mode: bool = False)"),
    (f"{COMPAT}:register_as_default", "(streaming: bool = True, compress_html: bool = True)"),
    (f"{COMPAT}:basic_interactive_setup", "(autovisualize_arrays: bool = True)"),
    (f"{COMPAT}:enable_interactive_context", "()"),
    (f"{COMPAT}:disable_interactive_context", "()"),
]

_FROZEN = (("frozen", True),)
_FROZEN_ORDER = (("frozen", True), ("order", True))

CLASSES: list[h.ClassSpec] = [
    h.ClassSpec(f"{S}:PyTreeDataclassSafetyError", bases=(Exception,)),
    h.ClassSpec(f"{S}:AbstractStructMetaclass", bases=(abc.ABCMeta,)),
    h.ClassSpec(
        f"{S}:StructStaticMetadata",
        fields="(child_field_names: list[str], static_fields: dict[str, Any])",
        dataclass_params=_FROZEN,
    ),
    h.ClassSpec(_STRUCT, pytree=False),
    h.ClassSpec("penzai.core.auto_order_types:AutoOrderedAcrossTypes"),
    h.ClassSpec(f"{TU}:CustomGetAttrKey", fields="(name: str)", dataclass_params=_FROZEN),
    h.ClassSpec("penzai.core.syntactic_sugar:SliceLike", fields="()", dataclass_params=_FROZEN),
    h.ClassSpec(
        "penzai.core.partitioning:NotInThisPartition",
        bases=(_STRUCT,), fields="()", pytree=True,
    ),
    h.ClassSpec(f"{SEL}:SelectionHole", bases=(_STRUCT,), fields="(path: static)", pytree=True),
    h.ClassSpec(f"{SEL}:SelectionQuote", bases=(_STRUCT,), fields="(quoted: static)", pytree=True),
    h.ClassSpec(
        f"{SEL}:Selection",
        bases=(_STRUCT, Generic),
        fields="(selected_by_path, remainder)",
        pytree=True,
    ),
    h.ClassSpec(f"{NX}:NamedArrayBase", bases=(abc.ABC,), pytree=False),
    h.ClassSpec(
        f"{NX}:NamedArray",
        bases=(f"{NX}:NamedArrayBase", _STRUCT),
        fields="(named_axes: static, data_array)",
        pytree=True,
    ),
    h.ClassSpec(
        f"{NX}:NamedArrayView",
        bases=(f"{NX}:NamedArrayBase", _STRUCT),
        fields=(
            "(data_shape: static, data_axis_for_logical_axis: static,"
            " data_axis_for_name: static, data_array)"
        ),
        pytree=True,
    ),
    h.ClassSpec(f"{NX}:_IndexUpdateRef", fields="(array, indexer)"),
    h.ClassSpec(
        f"{CHK}:Wildcard",
        bases=(_STRUCT,), fields="(description: static = None)", pytree=True,
    ),
    h.ClassSpec(f"{CHK}:RemainingAxisPlaceholder", fields="()", dataclass_params=_FROZEN),
    h.ClassSpec(
        f"{CHK}:DimVar",
        bases=(collections.abc.Mapping,), fields="(name)", dataclass_params=_FROZEN_ORDER,
    ),
    h.ClassSpec(f"{CHK}:MultiDimVar", fields="(name)", dataclass_params=_FROZEN_ORDER),
    h.ClassSpec(
        f"{CHK}:KnownDim",
        fields="(name, size, from_keypath = None)",
        dataclass_params=_FROZEN_ORDER,
    ),
    h.ClassSpec(
        f"{CHK}:ArraySpec",
        bases=(_STRUCT,),
        fields="(shape: static = (), dtype: static = np.generic, named_shape: static = <factory>)",
        pytree=True,
    ),
    h.ClassSpec(
        f"{CHK}:MatchResult",
        bases=(collections.abc.Mapping,), fields="(_bindings)", dataclass_params=_FROZEN,
    ),
    h.ClassSpec(f"{CHK}:StructureMismatchError", bases=(Exception,)),
    h.ClassSpec(
        f"{CHK}:DimensionVariableSubstitution",
        fields="(size_variables, sequence_variables, mapping_variables)",
        dataclass_params=(("frozen", False),),
    ),
    h.ClassSpec(f"{VAR}:VariableConflictError", bases=(Exception,)),
    h.ClassSpec(f"{VAR}:UnboundVariableError", bases=(Exception,)),
    h.ClassSpec(f"{VAR}:AbstractVariable", bases=(abc.ABC,)),
    h.ClassSpec(f"{VAR}:AbstractVariableValue", bases=(_STRUCT, abc.ABC), pytree=False),
    h.ClassSpec(f"{VAR}:AbstractVariableSlot", bases=(_STRUCT, abc.ABC), pytree=False),
    h.ClassSpec(f"{VAR}:LabeledVariable", bases=(f"{VAR}:AbstractVariable", Generic)),
    h.ClassSpec(
        f"{VAR}:LabeledVariableValue",
        bases=(f"{VAR}:AbstractVariableValue", Generic),
        fields="(label: static, value, metadata: static = <factory>)",
        pytree=True,
    ),
    h.ClassSpec(f"{VAR}:Parameter", bases=(f"{VAR}:LabeledVariable",)),
    h.ClassSpec(
        f"{VAR}:ParameterValue",
        bases=(f"{VAR}:LabeledVariableValue",),
        fields="(label: static, value, metadata: static = <factory>)",
        pytree=True,
        implicit=True,
    ),
    h.ClassSpec(
        f"{VAR}:ParameterSlot",
        bases=(f"{VAR}:AbstractVariableSlot",), fields="(label: static)", pytree=True,
    ),
    h.ClassSpec(
        f"{VAR}:AutoStateVarLabel",
        bases=("penzai.core.auto_order_types:AutoOrderedAcrossTypes",),
        fields="(var_id)",
        dataclass_params=_FROZEN,
    ),
    h.ClassSpec(
        f"{VAR}:ScopedStateVarLabel",
        bases=("penzai.core.auto_order_types:AutoOrderedAcrossTypes",),
        fields="(group, index)",
        dataclass_params=_FROZEN,
    ),
    h.ClassSpec(f"{VAR}:StateVariable", bases=(f"{VAR}:LabeledVariable",)),
    h.ClassSpec(
        f"{VAR}:StateVariableValue",
        bases=(f"{VAR}:LabeledVariableValue",),
        fields="(label: static, value, metadata: static = <factory>)",
        pytree=True,
        implicit=True,
    ),
    h.ClassSpec(
        f"{VAR}:StateVariableSlot",
        bases=(f"{VAR}:AbstractVariableSlot",), fields="(label: static)", pytree=True,
    ),
    h.ClassSpec(
        "penzai.core.random_stream:RandomStream",
        bases=(_STRUCT,), fields="(base_key, offset)", pytree=True,
    ),
    h.ClassSpec(
        f"{TSH}.named_axes_handlers:NamedArrayAdapter",
        bases=(treescope.ndarray_adapters.NDArrayAdapter,),
    ),
]

# `jax.Array` methods that named arrays re-expose, vectorized with nmap.
WRAPPED_ARRAY_METHODS = (
    "all any argmax argmin argpartition argsort astype choose clip compress conj"
    " conjugate cumprod cumsum diagonal dot flatten imag item max mean min"
    " nonzero prod ptp ravel real repeat reshape round searchsorted sort squeeze"
    " std sum swapaxes take trace transpose T mT var view"
).split()


@pytest.mark.parametrize("target,expected", CALLABLES, ids=[t for t, _ in CALLABLES])
def test_callable_signature(target: str, expected: str) -> None:
  h.check(h.callable_problems(target, expected), f"{target}{expected}", lambda: h.describe(target))


@pytest.mark.parametrize("spec", CLASSES, ids=[c.target for c in CLASSES])
def test_class_structure(spec: h.ClassSpec) -> None:
  h.check(h.class_problems(spec), spec.target, lambda: h.describe(spec.target))


def test_struct_metaclass() -> None:
  assert type(pz.Struct) is pz.Struct.__class__
  assert isinstance(pz.Struct, h.resolve(f"{S}:AbstractStructMetaclass"))


def test_checked_sequential_style_static_metadata_available() -> None:
  # `is_pytree_node_field` is what the field checks above rely on.
  import dataclasses

  @pz.pytree_dataclass
  class Tmp(pz.Struct):
    a: int
    b: int = dataclasses.field(metadata={"pytree_node": False})

  a_field, b_field = dataclasses.fields(Tmp)
  assert pz.is_pytree_node_field(a_field) is True
  assert pz.is_pytree_node_field(b_field) is False


@pytest.mark.parametrize("name", WRAPPED_ARRAY_METHODS)
def test_wrapped_array_method_exposes_jax_signature(name: str) -> None:
  from penzai.core import named_axes

  ours = getattr(named_axes.NamedArrayBase, name)
  theirs = getattr(jax.Array, name)
  assert ours.__name__ == getattr(theirs, "__name__", name)
  assert ours.__wrapped__ is theirs
  assert ours.__module__ == "penzai.core.named_axes"
  if callable(theirs):
    assert inspect.signature(ours) == inspect.signature(theirs)


def test_named_axes_has_no_vmap_and_expected_public_names() -> None:
  from penzai.core import named_axes

  assert not hasattr(named_axes, "vmap")
  for name in (
      "AxisName TmpPosAxisMarker nmap NamedArrayBase NamedArray NamedArrayView"
      " wrap is_namedarray full zeros ones arange random_split concatenate"
      " stack unstack order_like scan"
  ).split():
    assert hasattr(named_axes, name), name
  assert named_axes.wrap == named_axes.NamedArray.wrap


def test_module_public_names() -> None:
  """Public names listed at the top of each core.md section exist."""
  expected: dict[str, str] = {
      S: "T PYTREE_DATACLASS_INFO_ATTR is_pytree_dataclass_type"
      " PyTreeDataclassSafetyError pytree_dataclass AbstractStructMetaclass"
      " is_pytree_node_field StructStaticMetadata Struct",
      TU: "PyTreeDef CustomGetAttrKey tree_flatten_exactly_one_level pretty_keystr",
      SEL: "KeyPath SelectedSubtree OtherSubtree T SelectionHole SelectionQuote"
      " Selection select _shift_negative_indices",
      CHK: "StructureAnnotation Wildcard ANY RemainingAxisPlaceholder DimVar"
      " MultiDimVar KnownDim var vars_for_axes ArraySpec MatchResult"
      " StructureMismatchError check_structure DimensionVariableSubstitution"
      " get_dimension_variables full_substitute_dimension_variables"
      " as_array_structure",
      VAR: "T VariableLabel VariableConflictError UnboundVariableError"
      " AbstractVariable AbstractVariableValue AbstractVariableSlot"
      " unbind_variables bind_variables freeze_variables variable_jit"
      " LabeledVariable LabeledVariableValue Parameter ParameterValue"
      " ParameterSlot AutoStateVarLabel ScopedStateVarLabel"
      " scoped_auto_state_var_labels StateVariable StateVariableValue"
      " StateVariableSlot unbind_params freeze_params unbind_state_vars"
      " freeze_state_vars",
      f"{TSH}.selection_rendering": "SelectedNodeTracker"
      " SelectionBoundaryLayoutMark is_rendering_a_selection",
  }
  missing = {
      module: [n for n in names.split() if not hasattr(h.resolve(module), n)]
      for module, names in expected.items()
  }
  assert {m: n for m, n in missing.items() if n} == {}
  from penzai.core import struct, tree_util

  assert struct.PYTREE_DATACLASS_INFO_ATTR == "__penzai_pytree_dataclass_info__"
  assert tree_util.PyTreeDef is jax.tree_util.PyTreeDef
  assert h.resolve(f"{CHK}:StructureAnnotation") is Any
  assert h.resolve(f"{VAR}:VariableLabel") is collections.abc.Hashable
  assert h.resolve(f"{NX}:AxisName") is collections.abc.Hashable


FINAL_MEMBERS = [
    f"{S}:Struct.from_attributes",
    f"{S}:Struct.attributes_dict",
    f"{S}:Struct.select",
    f"{S}:Struct.tree_flatten_with_keys",
    f"{S}:Struct.tree_flatten",
    f"{S}:Struct.tree_unflatten",
    f"{VAR}:AbstractVariable.__get_state_as_jax_pytree__",
    f"{VAR}:AbstractVariable.__set_state_from_jax_pytree__",
    f"{VAR}:AbstractVariableValue.__jax_pytree_state_to_new_variable__",
]


@pytest.mark.parametrize("target", FINAL_MEMBERS)
def test_member_is_typing_final(target: str) -> None:
  assert h.is_final(target), f"{target} should be decorated with @typing.final"


NAMED_ARRAY_OPERATORS = (
    "__lt__ __le__ __eq__ __ne__ __ge__ __gt__ __add__ __sub__ __mul__"
    " __truediv__ __floordiv__ __mod__ __divmod__ __pow__ __lshift__ __rshift__"
    " __and__ __or__ __xor__ __radd__ __rsub__ __rmul__ __rtruediv__"
    " __rfloordiv__ __rmod__ __rdivmod__ __rpow__ __rlshift__ __rrshift__"
    " __rand__ __ror__ __rxor__ __abs__ __neg__ __pos__ __invert__ __bool__"
    " __complex__ __int__ __float__ __index__"
).split()
NAMED_ARRAY_ABSENT = (
    "shape ndim size __len__ __array__ __jax_array__ __matmul__ __rmatmul__"
    " __setitem__ copy tolist nbytes __round__"
).split()


@pytest.mark.parametrize("cls_name", ["NamedArray", "NamedArrayView"])
def test_named_array_operator_surface(cls_name: str) -> None:
  cls = h.resolve(f"{NX}:{cls_name}")
  missing = [op for op in NAMED_ARRAY_OPERATORS if not callable(getattr(cls, op, None))]
  present = [name for name in NAMED_ARRAY_ABSENT if hasattr(cls, name)]
  assert (missing, present) == ([], [])


@pytest.mark.parametrize("cls_name", ["NamedArray", "NamedArrayView"])
@pytest.mark.parametrize(
    "member,expected",
    [
        ("check_valid", "(self) -> None"),
        ("unwrap", "(self, *names)"),
        ("with_positional_prefix", "(self)"),
        ("as_namedarrayview", "(self)"),
        ("untag", "(self, *axis_order)"),
        ("tag", "(self, *names)"),
        ("dtype", "property"),
        ("named_shape", "property"),
        ("positional_shape", "property"),
    ],
)
def test_named_array_concrete_members(cls_name: str, member: str, expected: str) -> None:
  target = f"{NX}:{cls_name}.{member}"
  h.check(h.callable_problems(target, expected), target, lambda: h.describe(target))


def test_named_array_view_has_no_wrap() -> None:
  from penzai.core import named_axes

  assert "wrap" not in vars(named_axes.NamedArrayView)
  assert not hasattr(named_axes.NamedArrayView, "wrap")


def test_pytree_dataclass_is_a_dataclass_transform() -> None:
  info = getattr(pz.pytree_dataclass, "__dataclass_transform__", None)
  assert info is not None
  assert info["frozen_default"] is True
  import dataclasses

  assert tuple(info["field_specifiers"]) == (dataclasses.field,)


def test_selection_is_subscriptable_generic() -> None:
  alias = pz.Selection[int]
  assert typing_get_origin(alias) is pz.Selection


def typing_get_origin(alias: Any) -> Any:
  import typing

  return typing.get_origin(alias)


@pytest.mark.parametrize(
    "target,count",
    [(f"{SEL}:Selection.apply", 4), (f"{VAR}:unbind_variables", 2)],
)
def test_typing_overloads(target: str, count: int) -> None:
  """core.md: `apply` has overloads for the four flag combinations,
  `unbind_variables` for ``freeze: Literal[False]`` / ``Literal[True]``."""
  import typing

  overloads = typing.get_overloads(h.resolve(target))
  assert len(overloads) == count
  if target.endswith("unbind_variables"):
    freeze_annotations = sorted(
        str(inspect.signature(o).parameters["freeze"].annotation) for o in overloads
    )
    assert all("Literal" in a for a in freeze_annotations), freeze_annotations
