"""Mutable variables (parameters and state) embedded in immutable pytrees.

A *variable* (`Parameter`, `StateVariable`) is a mutable Python object that is
an opaque leaf to JAX. To move variables across a JAX transformation boundary,
they are *unbound* (replaced by hashable slots), *frozen* into pytree values,
and later *bound* back or used to update the original variables.
`variable_jit` packages this round trip behind a `jax.jit`-like interface.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import inspect
import typing
from collections.abc import Hashable
from typing import Any, Callable, Generic, Iterable, Iterator, Literal, TypeVar, overload

import jax
import jax.numpy as jnp
import treescope
from treescope import repr_lib

from penzai.core import auto_order_types
from penzai.core import selectors
from penzai.core import struct

T = TypeVar("T")

VariableLabel: typing.TypeAlias = Hashable

_VARIABLES_KWARG = "__penzai_variables"


class VariableConflictError(Exception):
  """Raised when a variable label or slot is used by multiple variables."""


class UnboundVariableError(Exception):
  """Raised when attempting to access the value of an unbound variable."""


# ---------------------------------------------------------------------------
# Abstract bases


class AbstractVariable(abc.ABC):
  """Base class for all variables: mutable, identity-hashed Python objects."""

  @abc.abstractmethod
  def freeze(self) -> AbstractVariableValue:
    """Returns a frozen (pytree) snapshot of this variable."""

  @abc.abstractmethod
  def get_slot(self) -> AbstractVariableSlot:
    """Returns the slot that stands in for this variable when unbound."""

  @abc.abstractmethod
  def update(self, new_frozen_value: AbstractVariableValue) -> None:
    """Sets this variable's value from a frozen value with the same slot."""

  @typing.final
  def __get_state_as_jax_pytree__(self) -> AbstractVariableValue:
    """Protocol hook: the variable's state as a JAX pytree."""
    return self.freeze()

  @typing.final
  def __set_state_from_jax_pytree__(self, value: AbstractVariableValue) -> None:
    """Protocol hook: restores the variable's state from a JAX pytree."""
    self.update(value)


class AbstractVariableValue(struct.Struct, abc.ABC):
  """Base class for all frozen variables (pytree snapshots of a variable)."""

  @abc.abstractmethod
  def unfreeze_as_copy(self) -> AbstractVariable:
    """Returns a new mutable variable holding this value."""

  @abc.abstractmethod
  def get_slot(self) -> AbstractVariableSlot:
    """Returns the slot of the variable this value was frozen from."""

  @typing.final
  def __jax_pytree_state_to_new_variable__(self) -> AbstractVariable:
    """Protocol hook: builds a new variable from this pytree state."""
    return self.unfreeze_as_copy()


class AbstractVariableSlot(struct.Struct, abc.ABC):
  """Base class for all variable slots (placeholders for unbound variables)."""


# ---------------------------------------------------------------------------
# Labeled variables


def _as_jax_array(leaf: Any) -> jax.Array:
  """`jnp.asarray(leaf)`, skipping the (identity) call for JAX arrays.

  `jnp.asarray` returns JAX arrays and tracers unchanged but is slow enough to
  dominate `variable_jit`'s per-call cost of updating many variables.
  """
  if isinstance(leaf, jax.Array):
    return leaf
  return jnp.asarray(leaf)


class LabeledVariable(AbstractVariable, Generic[T]):
  """A variable identified by a label, holding a pytree of JAX arrays."""

  label: VariableLabel
  metadata: dict[Any, Any]
  _raw_value: T

  def __init__(
      self,
      *,
      label: VariableLabel,
      value: T,
      metadata: dict[Any, Any] | None = None,
  ):
    """Creates a variable with the given label, value and metadata."""
    self.label = label
    self.metadata = metadata or {}
    self.value = value

  @property
  def value(self) -> T:
    """The current value of the variable."""
    return self._raw_value

  @value.setter
  def value(self, new_val: T) -> None:
    self._raw_value = jax.tree_util.tree_map(_as_jax_array, new_val)
    self.__dict__.pop(_FROZEN_CACHE_ATTR, None)  # Release the old value.

  def set_value(self, new_val: T) -> None:
    """Sets the value of the variable (same as assigning `.value`)."""
    self.value = new_val

  def update(self, new_frozen_value: LabeledVariableValue) -> None:  # type: ignore[override]
    """Sets the value from a frozen value whose slot matches this variable."""
    if self.get_slot() != new_frozen_value.get_slot():
      raise ValueError(
          f"Cannot update variable {self} with incompatible"
          f" value{new_frozen_value}!"
      )
    self.value = new_frozen_value.value

  @abc.abstractmethod
  def treescope_color(self) -> str | tuple[str, str]:
    """The color used to render this variable."""

  def __repr__(self) -> str:
    with treescope.using_expansion_strategy(max_height=1):
      return treescope.render_to_text(self, ignore_exceptions=True)

  def __treescope_repr__(self, path: str | None, subtree_renderer: Any) -> Any:
    """Treescope hook: renders as a (non-roundtrippable) constructor call."""
    color = self.treescope_color()
    return repr_lib.render_object_constructor(
        object_type=type(self),
        attributes={
            "label": self.label,
            "value": self.value,
            "metadata": self.metadata,
        },
        path=path,
        subtree_renderer=subtree_renderer,
        roundtrippable=False,
        color=color if isinstance(color, str) else color[0],
    )


@struct.pytree_dataclass
class LabeledVariableValue(AbstractVariableValue, Generic[T]):
  """Frozen snapshot of a labeled variable; its only pytree child is `value`.

  Attributes:
    label: The label of the originating variable.
    value: The frozen value.
    metadata: The metadata of the originating variable.
  """

  label: VariableLabel = dataclasses.field(metadata={"pytree_node": False})
  value: T
  metadata: dict[Any, Any] = dataclasses.field(
      default_factory=dict, metadata={"pytree_node": False}
  )


# ---------------------------------------------------------------------------
# Parameters


_SLOT_CACHE_ATTR = "_cached_slot"

SlotT = TypeVar("SlotT", bound="AbstractVariableSlot")


def _cached_slot(var: LabeledVariable[Any], slot_type: type[SlotT]) -> SlotT:
  """`slot_type(label=var.label)`, built once per label of `var`.

  Slots are immutable, so the same slot object can be returned until the
  variable's label changes. Unbinding and updating variables (every
  `variable_jit` call) then reuse slots and their pytree metadata.
  """
  cached = var.__dict__.get(_SLOT_CACHE_ATTR)
  label = var.label
  if cached is None or cached.label is not label or type(cached) is not slot_type:
    cached = slot_type(label=label)  # type: ignore[call-arg]
    var.__dict__[_SLOT_CACHE_ATTR] = cached
  return cached


_FROZEN_CACHE_ATTR = "_cached_frozen_value"

ValueT = TypeVar("ValueT", bound="LabeledVariableValue")


def _cached_frozen(var: LabeledVariable[Any], value_type: type[ValueT]) -> ValueT:
  """`value_type(value=, label=, metadata=)` of `var`, reused while current.

  Frozen values are immutable, so freezing an unchanged variable again can
  return the same object; passing it to a jitted function then matches the
  jit cache by identity. It is rebuilt whenever the variable's value, label
  or metadata object changed (the `value` setter also drops it).
  """
  cached = var.__dict__.get(_FROZEN_CACHE_ATTR)
  if (
      cached is not None
      and type(cached) is value_type
      and cached.value is var._raw_value  # pylint: disable=protected-access
      and cached.label is var.label
      and cached.metadata is var.metadata
  ):
    return cached
  frozen = value_type(  # type: ignore[call-arg]
      value=var.value, label=var.label, metadata=var.metadata
  )
  var.__dict__[_FROZEN_CACHE_ATTR] = frozen
  return frozen


def _remember_frozen(var: LabeledVariable[Any], frozen: Any) -> None:
  """Sets `var`'s value to JAX arrays `frozen.value`, without conversion.

  Used where `frozen` is an output of a jitted computation (leaves are
  already JAX arrays). `frozen` becomes the result of `var.freeze()` if it
  carries the variable's own label and metadata objects.
  """
  var._raw_value = frozen.value  # pylint: disable=protected-access
  if (
      _PLAIN_VALUE_TYPES.get(type(var)) is type(frozen)
      and frozen.label is var.label
      and frozen.metadata is var.metadata
  ):
    var.__dict__[_FROZEN_CACHE_ATTR] = frozen
  else:
    var.__dict__.pop(_FROZEN_CACHE_ATTR, None)


class Parameter(LabeledVariable[T]):
  """A model parameter variable."""

  def freeze(self) -> ParameterValue[T]:
    """Returns a frozen `ParameterValue` sharing this parameter's metadata."""
    return _cached_frozen(self, ParameterValue)

  def get_slot(self) -> ParameterSlot:
    """Returns the `ParameterSlot` for this parameter's label."""
    return _cached_slot(self, ParameterSlot)

  def treescope_color(self) -> str:
    return "#93cce1"


@struct.pytree_dataclass(has_implicitly_inherited_fields=True)
class ParameterValue(LabeledVariableValue[T]):
  """The value of a Parameter, as a frozen JAX pytree."""

  def unfreeze_as_copy(self) -> Parameter[T]:
    """Returns a new `Parameter` with this value, label and metadata."""
    return Parameter(value=self.value, label=self.label, metadata=self.metadata)

  def get_slot(self) -> ParameterSlot:
    """Returns the `ParameterSlot` for this value's label."""
    return ParameterSlot(label=self.label)

  def treescope_color(self) -> str:
    return "#a0b0c9"


@struct.pytree_dataclass
class ParameterSlot(AbstractVariableSlot):
  """A slot for a parameter in a model.

  Attributes:
    label: The label of the parameter that belongs in this slot.
  """

  label: VariableLabel = dataclasses.field(metadata={"pytree_node": False})

  @property
  def value(self) -> typing.NoReturn:
    """Always raises: an unbound slot has no value."""
    raise UnboundVariableError(
        f"Tried to access the .value property of a ParameterSlot: {self}."
    )

  def treescope_color(self) -> tuple[str, str]:
    return "#93cce1", "#cdcdcd"


# ---------------------------------------------------------------------------
# State variables and labels


@dataclasses.dataclass(frozen=True)
class AutoStateVarLabel(auto_order_types.AutoOrderedAcrossTypes):
  """A label for a StateVariable that is unique based on its Python object ID.

  Attributes:
    var_id: The `id` of the labeled variable.
  """

  var_id: int


@dataclasses.dataclass(frozen=True)
class ScopedStateVarLabel(auto_order_types.AutoOrderedAcrossTypes):
  """A label for a StateVariable that is unique within some scope.

  Attributes:
    group: The group given to `scoped_auto_state_var_labels`.
    index: The creation index of the variable within the scope.
  """

  group: Any
  index: int


@dataclasses.dataclass
class _LabelScope:
  """Active scope of `scoped_auto_state_var_labels`."""

  group: Hashable
  next_index: int = 0


_active_label_scope: _LabelScope | None = None


@contextlib.contextmanager
def scoped_auto_state_var_labels(group: Hashable = None) -> Iterator[None]:
  """Context manager for using scoped auto-generated StateVariable labels.

  While active, each `StateVariable` created without a label is labeled
  `ScopedStateVarLabel(group=group, index=k)` with `k` counting from 0 in this
  scope, so labels are reproducible (e.g. across repeated traces).

  Args:
    group: A hashable group identifier included in every generated label.

  Yields:
    None.
  """
  global _active_label_scope
  outer_scope = _active_label_scope
  _active_label_scope = _LabelScope(group=group)
  try:
    yield
  finally:
    _active_label_scope = outer_scope


class StateVariable(LabeledVariable[T]):
  """A mutable state variable, meant to be modified during the forward pass."""

  def __init__(
      self,
      value: T,
      *,
      label: VariableLabel | None = None,
      metadata: dict[Any, Any] | None = None,
  ):
    """Creates a state variable; `label=None` generates an automatic label."""
    if label is None:
      scope = _active_label_scope
      if scope is None:
        label = AutoStateVarLabel(var_id=id(self))
      else:
        label = ScopedStateVarLabel(group=scope.group, index=scope.next_index)
        scope.next_index += 1
    super().__init__(label=label, value=value, metadata=metadata)

  def freeze(self) -> StateVariableValue[T]:
    """Returns a frozen `StateVariableValue` sharing this variable's metadata."""
    return _cached_frozen(self, StateVariableValue)

  def get_slot(self) -> StateVariableSlot:
    """Returns the `StateVariableSlot` for this variable's label."""
    return _cached_slot(self, StateVariableSlot)

  def treescope_color(self) -> str:
    return "#f57603"


@struct.pytree_dataclass(has_implicitly_inherited_fields=True)
class StateVariableValue(LabeledVariableValue[T]):
  """The value of a StateVariable, as a frozen JAX pytree."""

  def unfreeze_as_copy(self) -> StateVariable[T]:
    """Returns a new `StateVariable` with this value, label and metadata."""
    return StateVariable(
        value=self.value, label=self.label, metadata=self.metadata
    )

  def get_slot(self) -> StateVariableSlot:
    """Returns the `StateVariableSlot` for this value's label."""
    return StateVariableSlot(label=self.label)

  def treescope_color(self) -> str:
    return "#d4af27"


@struct.pytree_dataclass
class StateVariableSlot(AbstractVariableSlot):
  """A slot for a state variable in a model.

  Attributes:
    label: The label of the state variable that belongs in this slot.
  """

  label: VariableLabel = dataclasses.field(metadata={"pytree_node": False})

  @property
  def value(self) -> typing.NoReturn:
    """Always raises: an unbound slot has no value."""
    raise UnboundVariableError(
        f"Tried to access the .value property of a StateVariableSlot: {self}."
    )

  def treescope_color(self) -> tuple[str, str]:
    return "#f57603", "#cdcdcd"


# ---------------------------------------------------------------------------
# Unbinding, binding and freezing


# type -> whether it is a variable slot type. `_is_slot` is called on every
# node of every tree that is unbound or bound, and `isinstance` against an ABC
# is slow compared to a dict lookup.
_IS_SLOT_TYPE: dict[type[Any], bool] = {}


def _is_slot(node: Any) -> bool:
  node_type = type(node)
  result = _IS_SLOT_TYPE.get(node_type)
  if result is None:
    result = isinstance(node, AbstractVariableSlot)
    if node_type is getattr(node, "__class__", node_type):
      _IS_SLOT_TYPE[node_type] = result
  return result


def _keystr_of_leaf(tree: Any, leaf_index: int) -> str:
  """Key path string of the `leaf_index`-th leaf (slots as leaves) of `tree`."""
  paths_and_leaves, _ = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=_is_slot
  )
  return jax.tree_util.keystr(paths_and_leaves[leaf_index][0])


@overload
def unbind_variables(
    tree: Any,
    predicate: Callable[[AbstractVariable], bool] | None = None,
    freeze: Literal[False] = False,
) -> tuple[Any, tuple[AbstractVariable, ...]]:
  ...


@overload
def unbind_variables(
    tree: Any,
    predicate: Callable[[AbstractVariable], bool] | None = None,
    *,
    freeze: Literal[True],
) -> tuple[Any, tuple[AbstractVariableValue, ...]]:
  ...


def unbind_variables(
    tree: Any,
    predicate: Callable[[AbstractVariable], bool] | None = None,
    freeze: bool = False,
) -> tuple[Any, tuple[AbstractVariable | AbstractVariableValue, ...]]:
  """Unbinds variables from a pytree, inserting variable slots in their place.

  Args:
    tree: A pytree that may contain variables.
    predicate: If given, only variables for which it returns a truthy value
      are unbound; others stay in place.
    freeze: Whether to return frozen values instead of the variables.

  Returns:
    `(tree_with_slots, variables)`, where `variables` holds each distinct
    unbound variable (or its frozen value) once, in flatten order.

  Raises:
    VariableConflictError: If an unbound variable's slot is already present
      in the tree, or two different variables share a slot.
  """
  leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=_is_slot)
  existing_slots: set[AbstractVariableSlot] = set()
  # slot -> (variable, index of its first leaf)
  found: dict[AbstractVariableSlot, tuple[AbstractVariable, int]] = {}
  new_leaves = list(leaves)
  for i, leaf in enumerate(leaves):
    if isinstance(leaf, AbstractVariable):
      if predicate is not None and not predicate(leaf):
        continue
      slot = leaf.get_slot()
      previous = found.get(slot)
      if previous is None:
        found[slot] = (leaf, i)
      elif previous[0] is not leaf:
        raise VariableConflictError(
            f"Found two Variables with the same slot {slot}! At keypaths"
            f" tree{_keystr_of_leaf(tree, i)},"
            f" tree{_keystr_of_leaf(tree, previous[1])}."
        )
      new_leaves[i] = slot
    elif isinstance(leaf, AbstractVariableSlot):
      existing_slots.add(leaf)
  for slot in found:
    if slot in existing_slots:
      raise VariableConflictError(
          f"Variable slot {slot} is already in use in the tree."
      )
  variables = tuple(var for var, _ in found.values())
  new_tree = jax.tree_util.tree_unflatten(treedef, new_leaves)
  if freeze:
    return new_tree, tuple(var.freeze() for var in variables)
  return new_tree, variables


def bind_variables(
    tree: Any,
    variables: Iterable[AbstractVariable | AbstractVariableValue],
    allow_unused: bool = False,
    unfreeze_as_copy: bool = False,
) -> Any:
  """Binds variables (mutable or frozen) into the variable slots in a pytree.

  Args:
    tree: A pytree containing variable slots.
    variables: Variables or frozen variable values; each replaces every slot
      equal to its `get_slot()`.
    allow_unused: Whether variables whose slot is absent from `tree` are
      allowed (otherwise they raise an error).
    unfreeze_as_copy: Whether to turn each frozen value into one new mutable
      variable (shared by all of its slots) before binding.

  Returns:
    A copy of `tree` with matching slots replaced.

  Raises:
    ValueError: On repeated slots among `variables`, unused variables (unless
      `allow_unused`), or non-value inputs with `unfreeze_as_copy=True`.
  """
  variables = list(variables)
  if unfreeze_as_copy:
    if not all(isinstance(var, AbstractVariableValue) for var in variables):
      raise ValueError(
          "unfreeze_as_copy=True is only allowed if all variables are variable"
          " values (e.g. ParameterValue or StateVariableValue)."
      )
    variables = [
        typing.cast(AbstractVariableValue, var).unfreeze_as_copy()
        for var in variables
    ]
  by_slot: dict[AbstractVariableSlot, AbstractVariable | AbstractVariableValue]
  by_slot = {}
  for var in variables:
    slot = var.get_slot()
    if slot in by_slot:
      raise ValueError(
          "Cannot substitute multiple variables into the same slot! Repeated"
          f" slot: {slot}"
      )
    by_slot[slot] = var
  leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=_is_slot)
  used: set[AbstractVariableSlot] = set()
  new_leaves = list(leaves)
  for i, leaf in enumerate(leaves):
    if isinstance(leaf, AbstractVariableSlot) and leaf in by_slot:
      new_leaves[i] = by_slot[leaf]
      used.add(leaf)
  if not allow_unused and len(used) != len(by_slot):
    unused = {slot for slot in by_slot if slot not in used}
    raise ValueError(
        f"Did not find any matching slots for some variables: {unused}"
    )
  return jax.tree_util.tree_unflatten(treedef, new_leaves)


def freeze_variables(
    tree: Any,
    predicate: Callable[[AbstractVariable], bool] | None = None,
) -> Any:
  """Replaces each variable in a pytree with a frozen copy.

  Args:
    tree: A pytree that may contain variables.
    predicate: If given, only variables for which it is truthy are frozen.

  Returns:
    A copy of `tree` where (selected) variables are replaced by `freeze()`.
  """
  selection = selectors.select(tree).at_instances_of(AbstractVariable)
  if predicate is not None:
    selection = selection.where(predicate)
  return selection.apply(lambda var: var.freeze())


def _restricted(
    cls: type[Any], predicate: Callable[[Any], bool] | None
) -> Callable[[AbstractVariable], bool]:
  """Predicate accepting instances of `cls` that also satisfy `predicate`."""
  if predicate is None:
    return lambda var: isinstance(var, cls)
  return lambda var: isinstance(var, cls) and bool(predicate(var))


@overload
def unbind_params(
    tree: Any,
    predicate: Callable[[Parameter], bool] | None = None,
    freeze: Literal[False] = False,
) -> tuple[Any, tuple[Parameter, ...]]:
  ...


@overload
def unbind_params(
    tree: Any,
    predicate: Callable[[Parameter], bool] | None = None,
    *,
    freeze: Literal[True],
) -> tuple[Any, tuple[ParameterValue, ...]]:
  ...


def unbind_params(
    tree: Any,
    predicate: Callable[[Parameter], bool] | None = None,
    freeze: bool = False,
) -> tuple[Any, tuple[Parameter | ParameterValue, ...]]:
  """Version of `unbind_variables` that only extracts Parameters."""
  return unbind_variables(  # type: ignore[call-overload,return-value]
      tree, _restricted(Parameter, predicate), freeze=freeze
  )


def freeze_params(
    tree: Any, predicate: Callable[[Parameter], bool] | None = None
) -> Any:
  """Version of `freeze_variables` that only freezes Parameters."""
  return freeze_variables(tree, _restricted(Parameter, predicate))


@overload
def unbind_state_vars(
    tree: Any,
    predicate: Callable[[StateVariable], bool] | None = None,
    freeze: Literal[False] = False,
) -> tuple[Any, tuple[StateVariable, ...]]:
  ...


@overload
def unbind_state_vars(
    tree: Any,
    predicate: Callable[[StateVariable], bool] | None = None,
    *,
    freeze: Literal[True],
) -> tuple[Any, tuple[StateVariableValue, ...]]:
  ...


def unbind_state_vars(
    tree: Any,
    predicate: Callable[[StateVariable], bool] | None = None,
    freeze: bool = False,
) -> tuple[Any, tuple[StateVariable | StateVariableValue, ...]]:
  """Version of `unbind_variables` that only extracts StateVariables."""
  return unbind_variables(  # type: ignore[call-overload,return-value]
      tree, _restricted(StateVariable, predicate), freeze=freeze
  )


def freeze_state_vars(
    tree: Any, predicate: Callable[[StateVariable], bool] | None = None
) -> Any:
  """Version of `freeze_variables` that only freezes StateVariables."""
  return freeze_variables(tree, _restricted(StateVariable, predicate))


# ---------------------------------------------------------------------------
# variable_jit


def _signature_or_none(fun: Callable[..., Any]) -> inspect.Signature | None:
  """`inspect.signature(fun)`, or None if it has no inspectable signature."""
  try:
    return inspect.signature(fun)
  except (TypeError, ValueError):
    return None


def _signature_with_variables_kwarg(
    signature: inspect.Signature | None,
) -> inspect.Signature | None:
  """A signature plus a keyword-only `__penzai_variables` parameter.

  Returns None if there is no signature or it already accepts `**kwargs`
  (which then absorbs the extra keyword argument).
  """
  if signature is None:
    return None
  params = list(signature.parameters.values())
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
    return None
  params.append(
      inspect.Parameter(_VARIABLES_KWARG, inspect.Parameter.KEYWORD_ONLY)
  )
  return signature.replace(parameters=params)


def _argnames_for_argnums(
    signature: inspect.Signature | None, argnums: int | Iterable[int] | None
) -> tuple[str, ...]:
  """Names of the positional-or-keyword parameters at indices `argnums`."""
  if signature is None or argnums is None:
    return ()
  indices = {argnums} if isinstance(argnums, int) else set(argnums)
  return tuple(
      param.name
      for i, param in enumerate(signature.parameters.values())
      if i in indices and param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
  )


def _find_variables(tree: Any) -> list[AbstractVariable]:
  return [
      leaf
      for leaf in jax.tree_util.tree_leaves(tree)
      if isinstance(leaf, AbstractVariable)
  ]


# Variable types whose `update` is exactly `LabeledVariable.update`, and the
# frozen value type whose slot matches theirs.
_PLAIN_VALUE_TYPES: dict[type[Any], type[Any]] = {}


def _unchanged_copy(
    var: AbstractVariable, original: AbstractVariableValue, donated: bool
) -> bool:
  """Whether a variable copy inside `variable_jit` still holds its input.

  Checked while tracing. For such variables (typically every Parameter of a
  forward pass) the jitted function returns nothing, so the call neither
  copies their arrays to outputs nor writes them back: updating a plain
  variable with the value it already holds would not change it. Donated
  inputs are always returned, since their old buffers become invalid.
  """
  if donated or _PLAIN_VALUE_TYPES.get(type(var)) is not type(original):
    return False
  copy = typing.cast(LabeledVariable[Any], var)
  value = typing.cast(LabeledVariableValue[Any], original)
  if copy.label != value.label:
    return False
  new_leaves, new_def = jax.tree_util.tree_flatten(copy.value)
  old_leaves, old_def = jax.tree_util.tree_flatten(value.value)
  return new_def == old_def and all(  # type: ignore[operator]
      new is old for new, old in zip(new_leaves, old_leaves)
  )


def variable_jit(
    fun: Callable[..., Any], *, donate_variables: bool = False, **jit_kwargs
) -> Callable[..., Any]:
  """Variable-aware version of `jax.jit`.

  Variables anywhere in the arguments are unbound and frozen before the call,
  rebound as fresh copies inside the compiled function, and the original
  variables are updated with the values the function left in the copies.

  Args:
    fun: The function to compile. It must not return variables; variables in
      static arguments or closed over by `fun` are not supported.
    donate_variables: Whether to donate the variables' buffers to the
      computation (their old arrays become invalid).
    **jit_kwargs: Other arguments for `jax.jit` (static_argnums,
      static_argnames, donate_argnames, out_shardings, ...), referring to
      `fun`'s own parameters.

  Returns:
    A function with the same call signature as `fun`.
  """

  def inner(*args, **kwargs):
    frozen_values = kwargs.pop(_VARIABLES_KWARG)
    fresh_vars = [value.unfreeze_as_copy() for value in frozen_values]
    args, kwargs = bind_variables((args, kwargs), fresh_vars)
    result = fun(*args, **kwargs)
    returned_vars = _find_variables(result)
    if returned_vars:
      raise ValueError(
          "Returning a variable from a function transformed by pz.variable_jit"
          " is not allowed. To create new variables under jax.jit, you should"
          " instead return `pz.unbind_variables(..., frozen=True)`, then"
          " rebuild the new variables after with `pz.bind_variables(...,"
          " unfreeze_as_copy=True)`.\nFound variables:"
          f" {returned_vars}"
      )
    return result, [
        None if _unchanged_copy(var, value, donate_variables) else var.freeze()
        for var, value in zip(fresh_vars, frozen_values)
    ]

  for attr in ("__name__", "__qualname__", "__module__"):
    if hasattr(fun, attr):
      setattr(inner, attr, getattr(fun, attr))
  fun_signature = _signature_or_none(fun)
  inner_signature = _signature_with_variables_kwarg(fun_signature)
  if inner_signature is not None:
    inner.__signature__ = inner_signature  # type: ignore[attr-defined]

  jit_kwargs = dict(jit_kwargs)
  if donate_variables:
    donated = jit_kwargs.get("donate_argnames")
    if donated is None:
      # `jax.jit` only infers names for `donate_argnums` when no names are
      # given; since we now give names, infer them here the same way.
      donated = _argnames_for_argnums(
          fun_signature, jit_kwargs.get("donate_argnums")
      )
    elif isinstance(donated, str):
      donated = (donated,)
    jit_kwargs["donate_argnames"] = (*donated, _VARIABLES_KWARG)
  if "out_shardings" in jit_kwargs:
    jit_kwargs["out_shardings"] = (jit_kwargs["out_shardings"], None)
  jitted = jax.jit(inner, **jit_kwargs)

  @functools.wraps(fun)
  def outer(*args, **kwargs):
    (args, kwargs), variables = unbind_variables((args, kwargs))
    frozen_values = [var.freeze() for var in variables]
    result, new_values = jitted(
        *args, **kwargs, **{_VARIABLES_KWARG: frozen_values}
    )
    for var, new_value in zip(variables, new_values):
      if new_value is None:
        continue  # `fun` did not change it (see `_unchanged_copy`).
      value_type = _PLAIN_VALUE_TYPES.get(type(var))
      if value_type is not None and type(new_value) is value_type:
        # Same check and effect as `var.update(new_value)`: the label decides
        # slot equality, and the outputs of `jitted` are already JAX arrays
        # (so the per-leaf conversion of the `.value` setter is skipped).
        if var.label != new_value.label:
          var.update(new_value)  # Raises the usual error.
        _remember_frozen(var, new_value)
      else:
        var.update(new_value)
    return result

  name = getattr(fun, "__name__", repr(fun))
  outer.__doc__ = (
      f"Variable-aware JIT-compiled version of {name}:\n{fun.__doc__}"
  )
  return outer


_PLAIN_VALUE_TYPES.update({
    Parameter: ParameterValue,
    StateVariable: StateVariableValue,
})
