"""Shape and structure checking for pytrees of (named) arrays.

A *structure annotation* is a pytree whose leaves are `ArraySpec` (an array
with a pattern for its positional shape, named shape and dtype), `Wildcard`
(anything goes) or plain values that must compare equal. Dimension variables
created with `var` / `vars_for_axes` are solved jointly across the whole tree
by `check_structure`, which returns the solved sizes as a `MatchResult` or
raises `StructureMismatchError` with a detailed report.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import typing
from typing import Any, Collection, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import ordered_set

from penzai.core import named_axes
from penzai.core import struct

StructureAnnotation: typing.TypeAlias = Any

_KNOWN_VARS_SOURCE = (
    "the known variable assignments (argument `known_vars` to check_structure)"
)


# ---------------------------------------------------------------------------
# Pattern building blocks
# ---------------------------------------------------------------------------


@struct.pytree_dataclass
class Wildcard(struct.Struct):
  """A pattern leaf that matches any value or subtree.

  Attributes:
    description: Optional text shown when the wildcard is rendered.
  """

  description: str | None = dataclasses.field(
      default=None, metadata={"pytree_node": False}
  )

  def __treescope_repr__(self, path: str | None, subtree_renderer: Any) -> Any:
    """Renders the wildcard with treescope (`*` or `<description>`)."""
    from penzai.core._treescope_handlers import shapecheck_handlers

    return shapecheck_handlers.handle_arraystructures(
        self, path, subtree_renderer
    )


ANY = Wildcard()


@dataclasses.dataclass(frozen=True)
class RemainingAxisPlaceholder:
  """Value paired with a `MultiDimVar` key in a named-shape pattern.

  Stands for "all named axes not otherwise mentioned".
  """


@dataclasses.dataclass(frozen=True, order=True)
class DimVar(Mapping):  # type: ignore[type-arg]
  """A variable standing for the size of a single dimension.

  It also behaves as a one-entry mapping / iterable so that `*var("x")` and
  `**var("x")` unpack into multi-dimension variables.

  Attributes:
    name: The variable name, or a `(name, key)` pair for a component of a
      composite variable (see `vars_for_axes`).
  """

  name: str | tuple[str, str | int]

  def __len__(self) -> int:
    return 1

  def __iter__(self) -> typing.Iterator[MultiDimVar]:
    if isinstance(self.name, tuple):
      raise TypeError("Cannot iterate over a tuple-named DimVar")
    return iter((MultiDimVar(self.name),))

  def __getitem__(self, key: Any) -> Any:
    if isinstance(self.name, tuple):
      raise TypeError("Cannot index a tuple-named DimVar")
    if key == MultiDimVar(self.name):
      return RemainingAxisPlaceholder()
    if isinstance(key, (int, str)):
      return DimVar((self.name, key))
    raise KeyError(f"Cannot get key {key!r} from a DimVar")


@dataclasses.dataclass(frozen=True, order=True)
class MultiDimVar:
  """A variable standing for several dimensions.

  Inside a positional `shape` tuple it matches a sequence of dimensions;
  as a key of a `named_shape` dict (with value `RemainingAxisPlaceholder()`)
  it matches a sub-mapping of named axes. Usually created by unpacking
  `*var(name)` or `**var(name)`.
  """

  name: str


@dataclasses.dataclass(frozen=True, order=True)
class KnownDim:
  """A dimension bound to a variable name whose size is already known.

  Attributes:
    name: The variable name (or `(name, key)` pair).
    size: The expected size.
    from_keypath: Where the size was originally determined, if anywhere.
  """

  name: str | tuple[str, str | int]
  size: int
  from_keypath: str | None = None


def var(name: str) -> DimVar:
  """Creates a dimension variable.

  Use `var("n")` for one dimension, `*var("batch")` for a sequence of
  positional dimensions and `**var("rest")` for a set of named axes.

  Args:
    name: The variable name.

  Returns:
    A `DimVar` with this name.
  """
  if not isinstance(name, str):
    raise TypeError(f"Variable names must be strings. Got {name!r}")
  return DimVar(name)


def vars_for_axes(
    var_name: str,
    axis_names_or_specs: Collection[str] | Mapping[str, int | None],
) -> dict[str, DimVar | KnownDim]:
  """Creates a named-shape fragment whose axis sizes form one variable.

  Intended for `named_shape={..., **vars_for_axes("h", {"heads": 4, "d": None})}`.
  In the match result all the axes are reported together as
  `result[var_name] == {axis: size, ...}`.

  Args:
    var_name: Name of the composite variable.
    axis_names_or_specs: Axis names, or a mapping from axis names to known
      sizes (or None for unknown sizes).

  Returns:
    A dict from axis name to a `DimVar` (unknown size) or `KnownDim`.
  """
  if not isinstance(axis_names_or_specs, Mapping):
    axis_names_or_specs = {name: None for name in axis_names_or_specs}
  result: dict[str, DimVar | KnownDim] = {}
  for axis, size in axis_names_or_specs.items():
    if size is None:
      result[axis] = DimVar((var_name, axis))
    else:
      result[axis] = KnownDim((var_name, axis), size)
  return result


# ---------------------------------------------------------------------------
# ArraySpec
# ---------------------------------------------------------------------------


@struct.pytree_dataclass
class ArraySpec(struct.Struct):
  """A pattern for an array: positional shape, dtype and named shape.

  Attributes:
    shape: Positional shape pattern (ints, `DimVar`, `KnownDim`, or unpacked
      `*var(...)` multi-dimension variables).
    dtype: Expected dtype. A NumPy scalar class such as `np.floating` matches
      any sub-dtype; anything else must match exactly after canonicalization.
    named_shape: Named shape pattern (axis name to int / `DimVar` /
      `KnownDim`, plus optional `**var(...)` entries).
  """

  shape: tuple[int | DimVar | MultiDimVar, ...] = dataclasses.field(
      default=(), metadata={"pytree_node": False}
  )
  dtype: jax.typing.DTypeLike = dataclasses.field(
      default=np.generic, metadata={"pytree_node": False}
  )
  named_shape: Mapping[
      named_axes.AxisName | MultiDimVar,
      int | DimVar | RemainingAxisPlaceholder,
  ] = dataclasses.field(
      default_factory=dict, metadata={"pytree_node": False}
  )

  @property
  def positional_shape(self) -> tuple[int | DimVar | MultiDimVar, ...]:
    """The positional shape pattern (same as `shape`)."""
    return self.shape

  @classmethod
  def floating_named(
      cls,
      named_shape: Mapping[
          named_axes.AxisName | MultiDimVar,
          int | DimVar | RemainingAxisPlaceholder,
      ],
  ) -> ArraySpec:
    """Builds a spec for a floating-point array with only named axes."""
    return cls(named_shape=named_shape, dtype=np.floating)

  def into_pytree(self) -> jax.ShapeDtypeStruct | named_axes.NamedArray:
    """Converts a fully-known spec into a `ShapeDtypeStruct` (or NamedArray).

    Raises:
      ValueError: If the spec contains dimension variables.
    """
    shape = tuple(self.shape)
    named_shape = dict(self.named_shape)
    if (
        any(isinstance(d, (DimVar, MultiDimVar)) for d in shape)
        or any(isinstance(k, MultiDimVar) for k in named_shape)
        or any(
            isinstance(v, (DimVar, RemainingAxisPlaceholder))
            for v in named_shape.values()
        )
    ):
      raise ValueError(
          "Cannot use `into_pytree` on an ArraySpec with variable dimensions."
      )
    shape = tuple(d.size if isinstance(d, KnownDim) else d for d in shape)
    sizes: dict[Any, int] = {
        k: (v.size if isinstance(v, KnownDim) else v)  # type: ignore[misc]
        for k, v in named_shape.items()
    }
    if sizes:
      return named_axes.NamedArray(
          named_axes=collections.OrderedDict(sizes),
          data_array=jax.ShapeDtypeStruct(  # type: ignore[arg-type]
              shape + tuple(sizes.values()), self.dtype
          ),
      )
    return jax.ShapeDtypeStruct(shape, self.dtype)

  def __treescope_repr__(self, path: str | None, subtree_renderer: Any) -> Any:
    """Renders the spec with treescope as a compact summary."""
    from penzai.core._treescope_handlers import shapecheck_handlers

    return shapecheck_handlers.handle_arraystructures(
        self, path, subtree_renderer
    )


# ---------------------------------------------------------------------------
# Results and errors
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MatchResult(Mapping[str, Any]):
  """The variable assignments solved by `check_structure`.

  Supports mapping access (`result["n"]`), multiple keys at once
  (`result["n", "m"]`) and attribute access (`result.n`).
  """

  _bindings: dict[str, int | tuple[int, ...] | dict[named_axes.AxisName, int]]

  def __getitem__(self, key: Any) -> Any:
    if isinstance(key, tuple):
      return tuple(self._bindings[k] for k in key)
    return self._bindings[key]

  def __iter__(self) -> typing.Iterator[str]:
    return iter(self._bindings)

  def __len__(self) -> int:
    return len(self._bindings)

  def __getattr__(self, name: str) -> Any:
    if name.startswith("__") or name == "_bindings":
      raise AttributeError(name)
    bindings = object.__getattribute__(self, "_bindings")
    if name in bindings:
      return bindings[name]
    raise AttributeError(name=name, obj=self)


class StructureMismatchError(Exception):
  """Raised when a value does not match a structure annotation."""


# ---------------------------------------------------------------------------
# Display helpers
# ---------------------------------------------------------------------------


def _show_name(name: str | tuple[str, str | int]) -> str:
  if isinstance(name, tuple):
    return f"var({name[0]!r})[{name[1]!r}]"
  return f"var({name!r})"


def _show_dim(dim: Any) -> str:
  """Formats one pattern element for error messages."""
  if isinstance(dim, (DimVar, MultiDimVar)):
    return _show_name(dim.name)
  if isinstance(dim, KnownDim):
    return f"{_show_name(dim.name)}:={dim.size}"
  return repr(dim)


def _summarize_pattern(pattern: Any) -> str:
  """Formats a positional (tuple) or named (dict) shape pattern."""
  if isinstance(pattern, dict):
    parts = []
    for key, value in pattern.items():
      if isinstance(key, MultiDimVar):
        parts.append(f"**var({key.name!r})")
      else:
        parts.append(f"{key!r}: {_show_dim(value)}")
    return "{" + ", ".join(parts) + "}"
  parts = []
  for dim in pattern:
    if isinstance(dim, MultiDimVar):
      parts.append(f"*var({dim.name!r})")
    else:
      parts.append(_show_dim(dim))
  if len(parts) == 1:
    return f"({parts[0]},)"
  return "(" + ", ".join(parts) + ")"


# ---------------------------------------------------------------------------
# Solver internals
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Binding:
  """A solved variable value and where it was determined."""

  value: Any
  source: str


@dataclasses.dataclass(frozen=True)
class _PositionalConstraint:
  """Positional shape of a value must match a pattern tuple."""

  value: tuple[Any, ...]
  pattern: tuple[Any, ...]
  keystr: str


@dataclasses.dataclass(frozen=True)
class _NamedConstraint:
  """Named shape of a value must match a pattern dict."""

  value: dict[Any, Any]
  pattern: dict[Any, Any]
  keystr: str


_MatchConstraint = _PositionalConstraint | _NamedConstraint


@dataclasses.dataclass(frozen=True)
class _UnsatisfiedConstraint:
  """A constraint that could not be processed yet (ambiguous unpacking).

  Attributes:
    constraint: The original constraint.
    inlined_pattern: Its pattern after inlining known multi-dim variables.
  """

  constraint: Any
  inlined_pattern: Any


def _abstract_leaf(value: Any) -> tuple[tuple[Any, ...], dict[Any, Any], Any] | None:
  """Returns (positional shape, named shape, dtype) of an array-like value."""
  if isinstance(value, named_axes.NamedArrayBase):
    value.check_valid()
    return (
        tuple(value.positional_shape),
        dict(value.named_shape),
        value.dtype,
    )
  if isinstance(value, ArraySpec):
    return (tuple(value.shape), dict(value.named_shape), value.dtype)
  if hasattr(value, "shape") and hasattr(value, "dtype"):
    return (tuple(value.shape), {}, value.dtype)
  if isinstance(value, (bool, int, float, complex)):
    return (jnp.shape(value), {}, jnp.result_type(value))
  return None


def _dtype_failure(value_dtype: Any, spec_dtype: Any) -> str | None:
  """Checks a value dtype against a spec dtype; returns a reason or None."""
  if isinstance(spec_dtype, type) and issubclass(spec_dtype, np.generic):
    if not jnp.issubdtype(value_dtype, spec_dtype):
      return (
          "Value has the wrong dtype: expected a sub-dtype of"
          f" {spec_dtype} but got dtype {value_dtype}."
      )
    return None
  expected = jax.dtypes.canonicalize_dtype(spec_dtype, allow_extended_dtype=True)
  actual = jax.dtypes.canonicalize_dtype(value_dtype, allow_extended_dtype=True)
  if expected != actual:
    return (
        f"Value has the wrong dtype: expected dtype {expected} but got dtype"
        f" {actual}."
    )
  return None


def _match_leaf(value: Any, pattern: Any) -> str | None:
  """Compares a non-ArraySpec pattern leaf to a value; returns a reason."""
  eq = pattern == value
  if isinstance(eq, jax.core.Tracer):
    ok = False
  elif isinstance(eq, (jax.Array, np.ndarray, np.generic)):
    ok = bool(np.all(eq))
  else:
    ok = bool(eq)
  if not ok:
    return f"Value {value!r} was not equal to the non-ArraySpec pattern {pattern!r}."
  return None


def _try_match_one(
    bindings: dict[Any, _Binding], pattern: Any, actual: Any, source: str) -> str | None:
  """Matches one dimension (or a multi-dim variable) against a value."""
  if isinstance(pattern, (DimVar, MultiDimVar)):
    bound = bindings.get(pattern.name)
    if bound is None:
      bindings[pattern.name] = _Binding(actual, source)
      return None
    if bound.value != actual:
      return (
          f"Size {actual} does not match previous size {bound.value} for"
          f" {_show_dim(pattern)} from {bound.source}"
      )
    return None
  if isinstance(pattern, KnownDim):
    bound = bindings.get(pattern.name)
    if bound is not None and bound.value != pattern.size:
      return (
          f"Size {pattern.size} does not match previous size {bound.value}"
          f" for {_show_dim(pattern)} from {bound.source}"
      )
    if bound is None:
      bindings[pattern.name] = _Binding(actual, source)
    if actual != pattern.size:
      if pattern.from_keypath is not None:
        return (
            f"Size {actual} does not match previous size {pattern.size} for"
            f" {_show_dim(pattern)} from {pattern.from_keypath}"
        )
      return f"Actual size {actual} does not match expected {_show_dim(pattern)}"
    return None
  if pattern != actual:
    return f"Actual size {actual} does not match expected {pattern!r}"
  return None

def _positional_inline_multidimvars(
    bindings: dict[Any, _Binding], pattern: tuple[Any, ...]
) -> tuple[list[Any], str]:
  """Replaces bound `*var(...)` entries by KnownDims; returns notes too."""
  inlined: list[Any] = []
  notes = ""
  for dim in pattern:
    if isinstance(dim, MultiDimVar) and dim.name in bindings:
      bound = bindings[dim.name]
      if isinstance(bound.value, tuple):
        for i, size in enumerate(bound.value):
          inlined.append(
              KnownDim((dim.name, i), size, from_keypath=bound.source)
          )
        notes += (
            f"\n  After inlining var({dim.name!r}) = {bound.value} from"
            f" {bound.source}"
        )
        continue
    inlined.append(dim)
  return inlined, notes

def _named_inline_multidimvars(
    bindings: dict[Any, _Binding], pattern: dict[Any, Any]
) -> tuple[dict[Any, Any] | None, str, str | None]:
  """Moves bound `**var(...)` entries to the end as KnownDims.

  Returns:
    (inlined pattern or None on conflict, notes, conflict message or None).
  """
  bound_keys = [
      k
      for k in pattern
      if isinstance(k, MultiDimVar)
      and k.name in bindings
      and isinstance(bindings[k.name].value, dict)
  ]
  if not bound_keys:
    return dict(pattern), "", None
  result = {k: v for k, v in pattern.items() if k not in bound_keys}
  notes = ""
  for key in bound_keys:
    bound = bindings[key.name]
    for axis, size in bound.value.items():
      if axis in result:
        return (
            None,
            notes,
            "Key conflict while substituting unpacked variable"
            f" var({key.name!r}) for known named sub-shape {bound.value} from"
            f" {bound.source}: name {axis} is already present in the shape"
            f" {_summarize_pattern(pattern)}.",
        )
      result[axis] = KnownDim(
          (key.name, axis), size, from_keypath=bound.source
      )
    notes += (
        f"\n  After inlining var({key.name!r}) = {bound.value} from"
        f" {bound.source}"
    )
  return result, notes, None


class _Solver:
  """Mutable state of one `check_structure` call: bindings and constraints."""

  def __init__(self, known_vars: Mapping[str, Any] | None):
    self.bindings: dict[Any, _Binding] = {}
    if known_vars is not None:
      for name, value in known_vars.items():
        self.bindings[name] = _Binding(value, _KNOWN_VARS_SOURCE)

  def _try_match_one(self, pattern: Any, actual: Any, source: str) -> str | None:
    return _try_match_one(self.bindings, pattern, actual, source)

  def _positional_inline_multidimvars(
      self, pattern: tuple[Any, ...]
  ) -> tuple[list[Any], str]:
    return _positional_inline_multidimvars(self.bindings, pattern)

  def _named_inline_multidimvars(
      self, pattern: dict[Any, Any]
  ) -> tuple[dict[Any, Any] | None, str, str | None]:
    return _named_inline_multidimvars(self.bindings, pattern)

  def process_positional(
      self, constraint: _PositionalConstraint
  ) -> str | _UnsatisfiedConstraint | None:
    """Processes a positional constraint: failure text, deferral or None."""
    value = constraint.value
    source = "root" + constraint.keystr
    pattern, notes = self._positional_inline_multidimvars(constraint.pattern)
    multi_positions = [
        i for i, d in enumerate(pattern) if isinstance(d, MultiDimVar)
    ]
    if len(multi_positions) >= 2:
      return _UnsatisfiedConstraint(constraint, tuple(pattern))
    summary = _summarize_pattern(tuple(pattern))
    lines: list[str] = []
    if multi_positions:
      (m,) = multi_positions
      prefix = pattern[:m]
      suffix = pattern[m + 1 :]
      if len(value) < len(prefix) + len(suffix):
        return (
            f"Positional shape {value} was shorter than wildcard pattern"
            f" {summary}" + notes
        )
      end = len(value) - len(suffix)
      multi = pattern[m]
      reason = self._try_match_one(multi, tuple(value[len(prefix) : end]), source)
      if reason is not None:
        lines.append(f"  Unpack pattern *var({multi.name}): {reason}")
      for i, dim in enumerate(prefix):
        reason = self._try_match_one(dim, value[i], source)
        if reason is not None:
          lines.append(f"  Dim {i}: {reason}")
      for j, dim in enumerate(suffix):
        reason = self._try_match_one(dim, value[end + j], source)
        if reason is not None:
          lines.append(f"  Dim {end + j}: {reason}")
    else:
      if len(value) != len(pattern):
        return (
            f"Positional shape {value} had different length than pattern"
            f" {summary}" + notes
        )
      for i, (dim, size) in enumerate(zip(pattern, value)):
        reason = self._try_match_one(dim, size, source)
        if reason is not None:
          lines.append(f"  Dim {i}: {reason}")
    if lines:
      return (
          f"Positional shape mismatch between value {value} and pattern"
          f" {summary}:\n" + "\n".join(lines) + notes
      )
    return None

  def process_named(
      self, constraint: _NamedConstraint
  ) -> str | _UnsatisfiedConstraint | None:
    """Processes a named constraint: failure text, deferral or None."""
    value = constraint.value
    source = "root" + constraint.keystr
    pattern, notes, conflict = self._named_inline_multidimvars(
        constraint.pattern
    )
    if pattern is None:
      return typing.cast(str, conflict) + notes
    multi_keys = [k for k in pattern if isinstance(k, MultiDimVar)]
    if len(multi_keys) >= 2:
      return _UnsatisfiedConstraint(constraint, pattern)
    lines: list[str] = []
    remaining = dict(value)
    for key, dim in pattern.items():
      if isinstance(key, MultiDimVar):
        continue
      if key in remaining:
        reason = self._try_match_one(dim, remaining.pop(key), source)
        if reason is not None:
          lines.append(f"  Axis {key!r}: {reason}")
      else:
        lines.append(f"  Axis {key!r}: Expected to be present but was missing")
    if multi_keys:
      (multi,) = multi_keys
      reason = self._try_match_one(multi, remaining, source)
      if reason is not None:
        lines.append(f"  Unpack pattern **{multi!r}: {reason}")
    elif remaining:
      lines.append(
          "  Unexpected names in value's named shape:"
          f" {sorted(list(remaining))}"
      )
    if lines:
      return (
          f"Named shape mismatch between value {value} and pattern"
          f" {_summarize_pattern(pattern)}:\n" + "\n".join(lines) + notes
      )
    return None

  def process(self, constraint: Any) -> str | _UnsatisfiedConstraint | None:
    if isinstance(constraint, _PositionalConstraint):
      return self.process_positional(constraint)
    return self.process_named(constraint)


def _var_sort_key(v: DimVar | MultiDimVar) -> tuple[Any, ...]:
  name = v.name
  if isinstance(name, tuple):
    return (name[0], 1, str(name[1]), type(v).__name__)
  return (name, 0, "", type(v).__name__)


def _unsolvable_variables(deferred: list[_UnsatisfiedConstraint]) -> list[Any]:
  found: set[Any] = set()
  for item in deferred:
    pattern = item.inlined_pattern
    if isinstance(pattern, dict):
      for key, dim in pattern.items():
        if isinstance(key, MultiDimVar):
          found.add(key)
        elif isinstance(dim, DimVar):
          found.add(dim)
    else:
      for dim in pattern:
        if isinstance(dim, (DimVar, MultiDimVar)):
          found.add(dim)
  return sorted(found, key=_var_sort_key)


def check_structure(
    value: Any,
    pattern: StructureAnnotation,
    known_vars: (
        Mapping[str, int | tuple[int, ...] | dict[named_axes.AxisName, int]]
        | None
    ) = None,
    error_prefix: str = "",
) -> MatchResult:
  """Checks that `value` matches `pattern` and solves its dimension variables.

  Args:
    value: The pytree to check.
    pattern: A structure annotation: a pytree prefix of `value` whose leaves
      are `ArraySpec`, `Wildcard`, or values that must compare equal.
    known_vars: Previously solved variables (e.g. an earlier `MatchResult`).
    error_prefix: Text prepended to error messages.

  Returns:
    A `MatchResult` with every solved variable (including `known_vars`).

  Raises:
    StructureMismatchError: If the value does not match.
  """
  solver = _Solver(known_vars)
  immediate: list[tuple[str, str]] = []
  constraints: list[Any] = []

  def visit(keypath: Any, pattern_leaf: Any, value_subtree: Any) -> None:
    keystr = jax.tree_util.keystr(keypath)
    if isinstance(pattern_leaf, Wildcard):
      return
    if isinstance(pattern_leaf, ArraySpec):
      abstract = _abstract_leaf(value_subtree)
      if abstract is None:
        immediate.append((
            keystr,
            "Couldn't match an ArraySpec with a non-arraylike value"
            f" {value_subtree}",
        ))
        return
      positional, named, dtype = abstract
      reason = _dtype_failure(dtype, pattern_leaf.dtype)
      if reason is not None:
        immediate.append((keystr, reason))
      constraints.append(
          _PositionalConstraint(positional, tuple(pattern_leaf.shape), keystr)
      )
      constraints.append(
          _NamedConstraint(named, dict(pattern_leaf.named_shape), keystr)
      )
      return
    reason = _match_leaf(value_subtree, pattern_leaf)
    if reason is not None:
      immediate.append((keystr, reason))

  jax.tree_util.tree_map_with_path(
      visit,
      pattern,
      value,
      is_leaf=lambda x: isinstance(x, (ArraySpec, Wildcard)),
  )

  pending = constraints
  first_pass = True
  while True:
    failures: list[tuple[str, str]] = list(immediate) if first_pass else []
    first_pass = False
    deferred: list[_UnsatisfiedConstraint] = []
    for constraint in pending:
      outcome = solver.process(constraint)
      if isinstance(outcome, _UnsatisfiedConstraint):
        deferred.append(outcome)
      elif outcome is not None:
        failures.append((constraint.keystr, outcome))
    if failures:
      lines = [error_prefix + "Mismatch while checking structures:"]
      lines.extend(f"At root{keystr}: {failure}" for keystr, failure in failures)
      if deferred:
        lines.append(
            "There may also be additional mismatches due to remaining"
            " unsolved constraints."
        )
      raise StructureMismatchError("\n".join(lines))
    if not deferred:
      break
    if len(deferred) == len(pending):
      variables = ", ".join(_show_dim(v) for v in _unsolvable_variables(deferred))
      unsolved = "".join(
          f"\n  {item.constraint.value} =="
          f" {_summarize_pattern(item.inlined_pattern)} from"
          f" root{item.constraint.keystr}"
          for item in deferred
      )
      raise StructureMismatchError(
          error_prefix
          + "Could not solve for all variable constraints. This usually"
          " means the variable assignment is ambiguous because multiple"
          " unpack patterns (*var(...) or **var(...)) appeared in the same"
          " positional or named shape.\nUnsolvable variables: "
          + variables
          + "\nUnsolvable constraints:"
          + unsolved
      )
    pending = [item.constraint for item in deferred]

  return MatchResult(_assemble_bindings(solver.bindings, error_prefix))


def _assemble_bindings(
    bindings: dict[Any, _Binding], error_prefix: str
) -> dict[str, Any]:
  """Groups `(name, key)` bindings and checks them against whole bindings."""
  result: dict[str, Any] = {}
  conflicts: list[str] = []
  for name, binding in bindings.items():
    if not isinstance(name, tuple):
      result[name] = binding.value
      continue
    outer, key = name
    if outer in bindings:
      whole = bindings[outer]
      agrees = False
      if isinstance(whole.value, tuple) and isinstance(key, int):
        agrees = -len(whole.value) <= key < len(whole.value) and (
            whole.value[key] == binding.value
        )
      elif isinstance(whole.value, Mapping):
        agrees = key in whole.value and whole.value[key] == binding.value
      if not agrees:
        conflicts.append(
            f"  var({outer!r}): Solved as {whole.value} from {whole.source} but"
            f" separately solved var({outer!r})[{key!r}] as {binding.value} from"
            f" {binding.source}"
        )
    else:
      group = result.setdefault(outer, {})
      group[key] = binding.value
  if conflicts:
    raise StructureMismatchError(
        error_prefix
        + "Unexpected conflicts between variable assignments:\n"
        + "\n".join(conflicts)
    )
  return result


# ---------------------------------------------------------------------------
# Variable extraction and substitution
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class DimensionVariableSubstitution:
  """Values to substitute for dimension variables in a structure annotation.

  Attributes:
    size_variables: Values for single-dimension variables.
    sequence_variables: Values for `*var(...)` positional variables.
    mapping_variables: Values for `**var(...)` named variables.
  """

  size_variables: dict[str | tuple[str, str | int], int | DimVar]
  sequence_variables: dict[str, tuple[int | DimVar | MultiDimVar, ...]]
  mapping_variables: dict[
      str, dict[Any | MultiDimVar, int | DimVar | RemainingAxisPlaceholder]
  ]

  def is_empty(self) -> bool:
    """True if there are no variables to substitute."""
    return not (
        self.size_variables or self.sequence_variables or self.mapping_variables
    )


def _is_arrayspec(x: Any) -> bool:
  return isinstance(x, ArraySpec)


def get_dimension_variables(
    structure: StructureAnnotation,
) -> DimensionVariableSubstitution:
  """Collects the dimension variables used in a structure annotation.

  Each variable maps to itself, so substituting the result back leaves the
  structure unchanged (apart from `KnownDim`s, which are ignored here).
  """
  result = DimensionVariableSubstitution({}, {}, {})
  for leaf in jax.tree_util.tree_leaves(structure, is_leaf=_is_arrayspec):
    if not isinstance(leaf, ArraySpec):
      continue
    for dim in tuple(leaf.shape):
      if isinstance(dim, DimVar):
        result.size_variables[dim.name] = dim
      elif isinstance(dim, MultiDimVar):
        result.sequence_variables[dim.name] = (dim,)
    for key, size in dict(leaf.named_shape).items():
      if isinstance(key, MultiDimVar):
        result.mapping_variables[key.name] = {key: RemainingAxisPlaceholder()}
      elif isinstance(size, DimVar):
        result.size_variables[size.name] = size
  return result


def full_substitute_dimension_variables(
    structure: StructureAnnotation,
    substitution: DimensionVariableSubstitution,
) -> Any:
  """Substitutes values for the dimension variables of a structure.

  Args:
    structure: A structure annotation.
    substitution: Values for its variables (every variable must be present).

  Returns:
    A copy of `structure` whose `ArraySpec`s have the variables replaced.

  Raises:
    KeyError: If a variable has no substitution.
    ValueError: If a `**var(...)` substitution introduces a duplicate name.
  """

  def substitute(keypath: Any, leaf: Any) -> Any:
    if not isinstance(leaf, ArraySpec):
      return leaf
    shape: list[Any] = []
    for dim in tuple(leaf.shape):
      if isinstance(dim, DimVar):
        shape.append(substitution.size_variables[dim.name])
      elif isinstance(dim, KnownDim):
        shape.append(dim.size)
      elif isinstance(dim, MultiDimVar):
        shape.extend(substitution.sequence_variables[dim.name])
      else:
        shape.append(dim)
    original = dict(leaf.named_shape)
    named: dict[Any, Any] = {}
    for key, size in original.items():
      if isinstance(key, MultiDimVar):
        for axis, axis_size in substitution.mapping_variables[key.name].items():
          if axis in named or (axis in original and axis != key):
            raise ValueError(
                "Key conflict while substituting mapping variable"
                f" var({key.name!r}) at root"
                f"{jax.tree_util.keystr(keypath)}: name {axis} is already"
                " present"
            )
          named[axis] = axis_size
      elif isinstance(size, DimVar):
        named[key] = substitution.size_variables[size.name]
      elif isinstance(size, KnownDim):
        named[key] = size.size
      else:
        named[key] = size
    return ArraySpec(shape=tuple(shape), named_shape=named, dtype=leaf.dtype)

  return jax.tree_util.tree_map_with_path(
      substitute, structure, is_leaf=_is_arrayspec
  )


def as_array_structure(tree: Any) -> StructureAnnotation:
  """Abstracts a pytree into a structure annotation.

  Arrays, named arrays and other shape/dtype-bearing leaves become concrete
  `ArraySpec`s; any other leaf becomes the wildcard `ANY`.
  """

  def is_leaf(x: Any) -> bool:
    return isinstance(x, (ArraySpec, named_axes.NamedArrayBase))

  def convert(leaf: Any) -> Any:
    if isinstance(leaf, ArraySpec):
      return leaf
    abstract = _abstract_leaf(leaf)
    if abstract is None:
      return ANY
    positional, named, dtype = abstract
    return ArraySpec(shape=positional, named_shape=named, dtype=dtype)

  return jax.tree_util.tree_map(convert, tree, is_leaf=is_leaf)
