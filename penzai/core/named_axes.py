"""Locally-scoped named axes: `NamedArray`, `NamedArrayView` and `nmap`.

A named array has *positional* axes (an ordered tuple, as for a normal array)
and *named* axes (a mapping from name to size). Every operation acts on the
positional axes and is automatically vectorized over the named axes, so code
never needs to know how many "batch-like" axes exist or where they are stored.

To operate on a named axis, `untag` it (making it positional), run a
positional operation through `nmap` (or one of the wrapped array methods),
and `tag` the resulting positional axes with names again.
"""

from __future__ import annotations

import abc
import collections
import collections.abc
import dataclasses
import enum
import functools
import importlib
import operator
import types
import typing
from typing import Any, Callable, Hashable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import ordered_set  # pylint: disable=unused-import

from penzai.core import struct

AxisName: typing.TypeAlias = collections.abc.Hashable

_INTEGER_NAME_MESSAGE = (
    "Integers are not allowed as axis names, to avoid confusion with"
    " positional axis indices."
)
_REPEATS_MESSAGE = "Repeats in `axis_order` are not allowed."


class TmpPosAxisMarker:
  """A unique temporary axis name, equal only to itself.

  Used to give positional axes a temporary name while moving other axes
  around (e.g. by `untag_prefix` and `tag_prefix`).
  """


def is_namedarray(value: Any) -> typing.TypeGuard[NamedArrayBase]:
  """Returns True if `value` is a `NamedArray` or `NamedArrayView`."""
  return isinstance(value, NamedArrayBase)


################################################################################
# nmap
################################################################################


class _Uncacheable(Exception):
  """Raised internally when a call to `nmap` cannot be keyed for reuse."""


# Types whose instances are keyed by identity: long-lived, effectively
# immutable callables (module-level functions compiled by JAX, ufuncs, ...).
_IDENTITY_KEYED_TYPES: tuple[type[Any], ...] = (
    types.ModuleType,
    type,
    np.ufunc,
    type(jnp.add),
    type(jnp.dot),
    jax.custom_jvp,
    jax.custom_vjp,
)

_MAX_KEY_DEPTH = 6
_SIMPLE_KEY_TYPES = frozenset(
    {type(None), type(Ellipsis), bool, int, str, bytes}
)


@functools.lru_cache(maxsize=4096)
def _global_names_of_code(code: types.CodeType) -> tuple[str, ...]:
  """Names a code object (or any nested code object) may load as globals."""
  names = list(code.co_names)
  for const in code.co_consts:
    if isinstance(const, types.CodeType):
      names.extend(_global_names_of_code(const))
  return tuple(dict.fromkeys(names))


def _static_key(obj: Any, depth: int = 0) -> Hashable:
  """Returns a hashable key that determines `obj`'s behaviour as a constant.

  Raises `_Uncacheable` for values that could change behind our back (mutable
  objects, arrays, objects hashed by identity of unknown kind).
  """
  if depth > _MAX_KEY_DEPTH:
    raise _Uncacheable()
  kind = type(obj)
  if kind in _SIMPLE_KEY_TYPES:
    return (kind, obj)
  if kind is types.ModuleType:
    return ("id", id(obj), obj)
  if kind is types.FunctionType:
    return _function_key(obj, depth)
  if kind in (float, complex):
    return (kind, repr(obj))
  if isinstance(obj, (tuple, list)):
    return (kind, tuple(_static_key(item, depth + 1) for item in obj))
  if isinstance(obj, dict):
    return (
        kind,
        tuple(
            (_static_key(k, depth + 1), _static_key(v, depth + 1))
            for k, v in obj.items()
        ),
    )
  if kind is slice:
    return (
        kind,
        _static_key(obj.start, depth + 1),
        _static_key(obj.stop, depth + 1),
        _static_key(obj.step, depth + 1),
    )
  if kind is types.FunctionType:
    return _function_key(obj, depth)
  if kind is functools.partial:
    return (
        kind,
        _static_key(obj.func, depth + 1),
        _static_key(obj.args, depth + 1),
        _static_key(obj.keywords, depth + 1),
    )
  if kind is types.MethodType:
    return (
        kind,
        _static_key(obj.__func__, depth + 1),
        _static_key(obj.__self__, depth + 1),
    )
  if isinstance(obj, (jax.core.Tracer, jax.Array, np.ndarray, NamedArrayBase)):
    raise _Uncacheable()
  if isinstance(obj, types.BuiltinFunctionType):
    # Module-level builtins only; builtin methods bound to (possibly mutable)
    # objects could change behaviour.
    owner = getattr(obj, "__self__", None)
    if owner is None or isinstance(owner, types.ModuleType):
      return ("id", id(obj), obj)
    raise _Uncacheable()
  if isinstance(obj, _IDENTITY_KEYED_TYPES):
    return ("id", id(obj), obj)
  if isinstance(obj, (np.dtype, np.generic)):
    return (kind, repr(obj))
  if isinstance(obj, enum.Enum):
    return (kind, obj)
  if isinstance(obj, frozenset):
    return (kind, frozenset(_static_key(item, depth + 1) for item in obj))
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    params = getattr(kind, "__dataclass_params__", None)
    if params is None or not params.frozen:
      raise _Uncacheable()
    return (
        kind,
        tuple(
            _static_key(getattr(obj, field.name), depth + 1)
            for field in dataclasses.fields(obj)
        ),
    )
  # Unknown objects may be mutable (e.g. variables), so they are never baked
  # into a compiled function.
  raise _Uncacheable()


def _function_key(fn: types.FunctionType, depth: int) -> Hashable:
  """Key of a Python function: code, defaults, closure and used globals."""
  try:
    closure = tuple(
        _static_key(cell.cell_contents, depth + 1)
        for cell in (fn.__closure__ or ())
    )
  except ValueError as exc:  # Empty closure cell.
    raise _Uncacheable() from exc
  fn_globals = fn.__globals__
  used_globals = tuple(
      (name, _static_key(fn_globals[name], depth + 1))
      for name in _global_names_of_code(fn.__code__)
      if name in fn_globals
  )
  return (
      "fn",
      fn.__code__,
      _static_key(fn.__defaults__, depth + 1),
      _static_key(fn.__kwdefaults__, depth + 1),
      closure,
      used_globals,
  )


# Calls of `nmap` on concrete arrays are run eagerly (vmap in op-by-op mode)
# the first few times. Once the same function is called with the same
# argument structure, shapes and constants repeatedly (e.g. a layer in an
# un-jitted loop), it is compiled once and the compiled version is reused:
# op-by-op vmap dispatch is far slower than one compiled call, but compiling
# only pays off for functions that are called many times.
_NMAP_EAGER_CALLS_BEFORE_JIT = 10
_NMAP_CACHE_LIMIT = 4096
_nmap_cache: dict[Hashable, list[Any]] = {}


def _inconsistent_names_error(
    fun: Any, args: Any, kwargs: Any, bad_names: list[Any]
) -> ValueError:
  """Builds the error for named axes with different sizes across arguments."""
  lines = [
      f"Inconsistent named axes in a call to nmap({fun}) for axes"
      f" {bad_names}:"
  ]
  for prefix, tree in (("args", args), ("kwargs", kwargs)):
    for path, leaf in jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=is_namedarray
    )[0]:
      if isinstance(leaf, NamedArrayBase):
        lines.append(
            f"  {prefix}{jax.tree_util.keystr(path)}.named_shape =="
            f" {leaf.named_shape}"
        )
  return ValueError("\n".join(lines))


def _plan_vmap_axes(
    views: Sequence[NamedArrayView], names: Sequence[AxisName]
) -> tuple[list[tuple[int | None, ...]], list[tuple[int, ...] | None]]:
  """Computes per-level `in_axes` for every view, and final transposes.

  Level `k` of the nested vmaps maps over `names[k]`; axes removed by outer
  levels shift the indices seen by inner levels. After all levels, the
  remaining axes are the logical axes in data order; the returned permutation
  (or None if not needed) puts them in logical order.
  """
  in_axes_per_view = []
  perms: list[tuple[int, ...] | None] = []
  for view in views:
    remaining = list(range(len(view.data_shape)))
    axes: list[int | None] = []
    for name in names:
      data_axis = view.data_axis_for_name.get(name)
      if data_axis is None:
        axes.append(None)
      else:
        position = remaining.index(data_axis)
        axes.append(position)
        del remaining[position]
    perm = tuple(remaining.index(a) for a in view.data_axis_for_logical_axis)
    perms.append(None if perm == tuple(range(len(perm))) else perm)
    in_axes_per_view.append(tuple(axes))
  return in_axes_per_view, perms


def _build_vmapped(
    fun: Callable[..., Any],
    treedef: Any,
    leaves: Sequence[Any],
    named_positions: Sequence[int],
    views: Sequence[NamedArrayView],
    names: Sequence[AxisName],
) -> Callable[..., Any]:
  """Builds `fun` vectorized with one nested `jax.vmap` per axis name."""
  in_axes_per_view, perms = _plan_vmap_axes(views, names)
  template = list(leaves)
  for position in named_positions:
    template[position] = None

  def positional_fun(*data_arrays: Any) -> Any:
    new_leaves = list(template)
    for position, data, perm in zip(named_positions, data_arrays, perms):
      new_leaves[position] = data if perm is None else jnp.transpose(data, perm)
    call_args, call_kwargs = jax.tree_util.tree_unflatten(treedef, new_leaves)
    return jax.tree_util.tree_map(jnp.asarray, fun(*call_args, **call_kwargs))

  vectorized = positional_fun
  for level in reversed(range(len(names))):
    vectorized = jax.vmap(
        vectorized,
        in_axes=tuple(axes[level] for axes in in_axes_per_view),
        axis_name=names[level],
    )
  return vectorized


def _wrap_nmap_output(
    value: Any, names: Sequence[AxisName]
) -> NamedArray | NamedArrayView:
  """Wraps an output array laid out as `[names..., positional...]` (L5)."""
  num_names = len(names)
  shape = tuple(value.shape)
  if len(shape) == num_names:
    return NamedArray(
        named_axes=collections.OrderedDict(zip(names, shape)), data_array=value
    )
  return NamedArrayView(
      data_shape=shape,
      data_axis_for_logical_axis=tuple(range(num_names, len(shape))),
      data_axis_for_name={name: i for i, name in enumerate(names)},
      data_array=value,
  )


def _nmap_call(
    fun: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
  """Runs `fun` vectorized over the named axes of its arguments."""
  leaves, treedef = jax.tree_util.tree_flatten(
      (args, kwargs), is_leaf=is_namedarray
  )
  named_positions: list[int] = []
  views: list[NamedArrayView] = []
  for position, leaf in enumerate(leaves):
    if isinstance(leaf, NamedArrayBase):
      named_positions.append(position)
      views.append(leaf.as_namedarrayview())

  sizes: dict[AxisName, int] = {}
  bad_names: list[AxisName] = []
  for view in views:
    data_shape = view.data_shape
    for name, data_axis in view.data_axis_for_name.items():
      size = data_shape[data_axis]
      if name not in sizes:
        sizes[name] = size
      elif sizes[name] != size and name not in bad_names:
        bad_names.append(name)
  if bad_names:
    raise _inconsistent_names_error(fun, args, kwargs, bad_names)
  names = tuple(sizes)
  data_arrays = [view.data_array for view in views]

  if not names:
    # Nothing to vectorize over: call `fun` directly on the concrete arrays.
    new_leaves = list(leaves)
    for position, view in zip(named_positions, views):
      new_leaves[position] = view.unwrap()
    call_args, call_kwargs = jax.tree_util.tree_unflatten(treedef, new_leaves)
    result = jax.tree_util.tree_map(
        jnp.asarray, fun(*call_args, **call_kwargs)
    )
    return jax.tree_util.tree_map(
        lambda value: _wrap_nmap_output(value, names), result
    )

  cache_entry = None
  if not any(isinstance(data, jax.core.Tracer) for data in data_arrays):
    try:
      key = (
          _static_key(fun),
          treedef,
          tuple(named_positions),
          tuple(
              _static_key(leaf)
              for leaf in leaves
              if not isinstance(leaf, NamedArrayBase)
          ),
          tuple(
              (
                  view.data_shape,
                  tuple(view.data_axis_for_logical_axis),
                  tuple(view.data_axis_for_name.items()),
                  view.data_array.dtype,
                  getattr(view.data_array, "weak_type", False),
              )
              for view in views
          ),
      )
      cache_entry = _nmap_cache.get(key)
      if cache_entry is None:
        if len(_nmap_cache) >= _NMAP_CACHE_LIMIT:
          _nmap_cache.clear()
        cache_entry = [0, None]
        _nmap_cache[key] = cache_entry
    except (_Uncacheable, TypeError):
      cache_entry = None

  compiled = None
  if cache_entry is not None:
    cache_entry[0] += 1
    if cache_entry[1] is None and cache_entry[0] > _NMAP_EAGER_CALLS_BEFORE_JIT:
      cache_entry[1] = jax.jit(
          _build_vmapped(fun, treedef, leaves, named_positions, views, names)
      )
    compiled = cache_entry[1]
  if compiled is None:
    vectorized = _build_vmapped(
        fun, treedef, leaves, named_positions, views, names
    )
  else:
    vectorized = compiled
  result = vectorized(*data_arrays)
  return jax.tree_util.tree_map(
      lambda value: _wrap_nmap_output(value, names), result
  )


def _nmap_docstring(fun_name: str, original_doc: str | None) -> str:
  doc = (
      f"Name-vectorized version of `{fun_name}`. Takes similar arguments as"
      f" `{fun_name}` but accepts and returns NamedArrays (or NamedArrayViews)"
      " in place of regular arrays."
  )
  if original_doc:
    doc += f"\n\nOriginal documentation:\n\n{original_doc}"
  return doc


def nmap(fun: Callable[..., Any]) -> Callable[..., Any]:
  """Automatically vectorizes `fun` over the named axes of its arguments.

  Every `NamedArray` / `NamedArrayView` argument (anywhere inside the pytrees
  of `args` and `kwargs`) is seen by `fun` as a plain array with its
  positional shape; `fun` is vectorized with one `jax.vmap` per axis name
  (using the name as `axis_name`, so collectives work). Other arguments are
  passed through unchanged. Axes with the same name must have the same size.
  Every output leaf becomes a named array carrying all input axis names.

  Args:
    fun: Function taking and returning (pytrees of) arrays.

  Returns:
    A function with the same signature that accepts and returns named arrays.
  """

  @functools.wraps(fun)
  def wrapped_fun(*args: Any, **kwargs: Any) -> Any:
    return _nmap_call(fun, args, kwargs)

  fun_name = getattr(fun, "__name__", None) or repr(fun)
  wrapped_fun.__doc__ = _nmap_docstring(fun_name, getattr(fun, "__doc__", None))
  return wrapped_fun


def _nmap_with_doc(
    fun: Callable[..., Any], fun_name: str, fun_doc: str | None = None
) -> Callable[..., Any]:
  """`nmap(fun)` with a docstring that refers to `fun_name`."""
  wrapped = nmap(fun)
  wrapped.__doc__ = _nmap_docstring(fun_name, fun_doc)
  return wrapped


_PYTHON_SCALAR_TYPES = (bool, int, float, complex)


def _aligned_data(
    view: NamedArrayView, names: Sequence[AxisName], positional_rank: int
) -> jax.Array:
  """Data of `view` laid out as `[names..., positional...]` for broadcasting.

  Names missing from `view` and missing leading positional axes get size 1
  (leading size-1 axes are left implicit when broadcasting allows it).
  """
  named = view.data_axis_for_name
  perm = (
      *(named[name] for name in names if name in named),
      *view.data_axis_for_logical_axis,
  )
  data = view.data_array
  if not isinstance(data, jax.Array):
    data = jnp.asarray(data)
  if perm != tuple(range(len(perm))):
    data = jnp.transpose(data, perm)
  positional = view.positional_shape
  target = (
      *(view.data_shape[named[name]] if name in named else 1 for name in names),
      *([1] * (positional_rank - len(positional))),
      *positional,
  )
  current = tuple(data.shape)
  num_implicit = len(target) - len(current)
  if target[num_implicit:] != current or any(
      size != 1 for size in target[:num_implicit]
  ):
    data = jnp.reshape(data, target)
  return data


def _elementwise_fast_path(
    fun: Callable[..., Any], array: NamedArrayBase, others: tuple[Any, ...]
) -> Any:
  """Applies an elementwise operator by broadcasting, without `jax.vmap`.

  Gives exactly the result (values and L5 layout) of `nmap(fun)(array,
  *others)`, or returns `NotImplemented` if this shortcut does not apply
  (unsupported operand types or inconsistent axis sizes; `nmap` then handles
  the call, including error reporting).
  """
  views = [array.as_namedarrayview()]
  raw_other = None
  for other in others:
    if isinstance(other, NamedArrayBase):
      views.append(other.as_namedarrayview())
    elif isinstance(other, (jax.Array, np.ndarray, np.generic)) or (
        type(other) in _PYTHON_SCALAR_TYPES
    ):
      raw_other = other
    else:
      return NotImplemented
  sizes: dict[AxisName, int] = {}
  for view in views:
    data_shape = view.data_shape
    for name, data_axis in view.data_axis_for_name.items():
      if sizes.setdefault(name, data_shape[data_axis]) != data_shape[data_axis]:
        return NotImplemented
  names = tuple(sizes)
  positional_rank = max(len(view.data_axis_for_logical_axis) for view in views)
  if raw_other is not None:
    positional_rank = max(positional_rank, np.ndim(raw_other))
    if isinstance(raw_other, (np.ndarray, np.generic)):
      raw_other = jnp.asarray(raw_other)
  operands = [_aligned_data(view, names, positional_rank) for view in views]
  if raw_other is not None:
    operands.append(raw_other)
  result = fun(*operands)
  expected_ndim = len(names) + positional_rank

  def wrap_result(value: Any) -> NamedArray | NamedArrayView:
    if not isinstance(value, jax.Array):
      value = jnp.asarray(value)
    if value.ndim < expected_ndim:
      value = jnp.reshape(
          value, (*([1] * (expected_ndim - value.ndim)), *value.shape)
      )
    return _wrap_nmap_output(value, names)

  if isinstance(result, tuple):
    return tuple(wrap_result(value) for value in result)
  return wrap_result(result)


def _elementwise_op(fun: Callable[..., Any], fun_name: str) -> Callable[..., Any]:
  """A name-vectorized operator method (`nmap(fun)` with a fast path)."""
  slow = _nmap_with_doc(fun, fun_name)

  @functools.wraps(slow)
  def operator_method(self: NamedArrayBase, *others: Any) -> Any:
    result = _elementwise_fast_path(fun, self, others)
    if result is NotImplemented:
      return slow(self, *others)
    return result

  return operator_method


def _swapped_binop(binop: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
  """Returns `binop` with its two arguments swapped (for reflected ops)."""

  @functools.wraps(binop)
  def swapped(x: Any, y: Any) -> Any:
    return binop(y, x)

  return swapped


def _wrap_scalar_conversion(
    scalar_conversion: Callable[[Any], Any],
) -> Callable[[NamedArrayBase], Any]:
  """Wraps a scalar conversion so it only applies to fully scalar arrays."""

  def wrapped_scalar_conversion(self: NamedArrayBase) -> Any:
    if self.named_shape or self.positional_shape:
      raise ValueError(
          "Cannot convert a non-scalar NamedArray or NamedArrayView with"
          f" {scalar_conversion}"
      )
    return scalar_conversion(self.unwrap())

  return wrapped_scalar_conversion


def _wrap_array_method(name: str) -> Callable[..., Any]:
  """Returns a name-vectorized version of the `jax.Array` method `name`."""

  def func(array: Any, *args: Any, **kwargs: Any) -> Any:
    return getattr(array, name)(*args, **kwargs)

  array_method = getattr(jax.Array, name)
  wrapped = nmap(func)
  for attr in ("__name__", "__qualname__", "__annotations__"):
    if hasattr(array_method, attr):
      setattr(wrapped, attr, getattr(array_method, attr))
  if not hasattr(array_method, "__name__"):  # Properties such as `T`.
    wrapped.__name__ = name
    wrapped.__qualname__ = f"NamedArrayBase.{name}"
  wrapped.__wrapped__ = array_method  # type: ignore[attr-defined]
  wrapped.__module__ = __name__
  wrapped.__doc__ = (
      f"Name-vectorized version of array method `{name}"
      f" <numpy.ndarray.{name}>`. Takes similar arguments as `{name}"
      f" <numpy.ndarray.{name}>` but accepts and returns NamedArrays (or"
      " NamedArrayViews) in place of regular arrays."
  )
  return wrapped


################################################################################
# Indexing helpers
################################################################################


@dataclasses.dataclass(frozen=True)
class _StaticThunk:
  """A static (hashable, compile-time) part of an index."""

  value: Any

  def unwrap(self, dynamic_values: Sequence[Any]) -> Any:
    del dynamic_values
    return self.value


@dataclasses.dataclass(frozen=True)
class _DynamicThunk:
  """Refers to the `index`-th dynamic (traced) part of an index."""

  index: int

  def unwrap(self, dynamic_values: Sequence[Any]) -> Any:
    return dynamic_values[self.index]


@dataclasses.dataclass(frozen=True)
class _SliceThunk:
  """A slice whose bounds are themselves thunks."""

  start: Any
  stop: Any
  step: Any

  def unwrap(self, dynamic_values: Sequence[Any]) -> slice:
    return slice(
        self.start.unwrap(dynamic_values),
        self.stop.unwrap(dynamic_values),
        self.step.unwrap(dynamic_values),
    )


def _is_dynamic_index(value: Any) -> bool:
  return isinstance(value, (jax.Array, np.ndarray, NamedArrayBase, int))


def _split_positional_index(
    indexer: tuple[Any, ...], convert_slice_bounds: bool
) -> tuple[tuple[Any, ...], list[Any]]:
  """Splits an index tuple into hashable thunks and dynamic values."""
  thunks: list[Any] = []
  dynamic_values: list[Any] = []

  def thunk_for(value: Any) -> Any:
    if _is_dynamic_index(value):
      dynamic_values.append(value)
      return _DynamicThunk(len(dynamic_values) - 1)
    return _StaticThunk(value)

  for part in indexer:
    if isinstance(part, slice):
      bounds = (part.start, part.stop, part.step)
      if convert_slice_bounds:
        thunks.append(
            _SliceThunk(*(
                _StaticThunk(None if bound is None else int(bound))
                for bound in bounds
            ))
        )
      else:
        # Bounds are passed through as given: plain ints and None are static,
        # anything else (e.g. a JAX scalar) is passed as a traced value.
        thunks.append(
            _SliceThunk(*(
                _StaticThunk(bound)
                if bound is None or type(bound) is int
                else thunk_for(bound)
                for bound in bounds
            ))
        )
    else:
      thunks.append(thunk_for(part))
  return tuple(thunks), dynamic_values


@functools.partial(jax.jit, static_argnums=(1, 3))
def _jitted_nmapped_getitem(
    array: NamedArrayBase,
    index_thunks: tuple[Any, ...],
    dynamic_index_values: list[Any],
    get_kwargs: tuple[tuple[str, Any], ...],
) -> NamedArray | NamedArrayView:
  """Positional indexing of `array`, vectorized over all named axes."""

  def positional_get(data: jax.Array, *dynamic_values: Any) -> jax.Array:
    index = tuple(thunk.unwrap(dynamic_values) for thunk in index_thunks)
    return data.at[index].get(**dict(get_kwargs))

  return nmap(positional_get)(array, *dynamic_index_values)


@functools.partial(jax.jit, static_argnums=(1, 4, 5))
def _jitted_nmapped_update(
    array: NamedArrayBase,
    index_thunks: tuple[Any, ...],
    dynamic_index_values: list[Any],
    values: Any,
    method: str,
    update_kwargs: tuple[tuple[str, Any], ...],
) -> NamedArray | NamedArrayView:
  """Positional indexed update of `array`, vectorized over named axes."""

  def positional_update(data: jax.Array, *dynamic_values: Any, values: Any):
    index = tuple(thunk.unwrap(dynamic_values) for thunk in index_thunks)
    return getattr(data.at[index], method)(values, **dict(update_kwargs))

  return nmap(positional_update)(array, *dynamic_index_values, values=values)


def _sorted_kwargs(kwargs: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
  return tuple(sorted(kwargs.items()))


@dataclasses.dataclass(frozen=True)
class _DictIndex:
  """A dict-style index, partitioned by the kind of each entry."""

  introduced: tuple[AxisName, ...]
  sliced: tuple[AxisName, ...]
  indexed: tuple[AxisName, ...]
  positional_index: tuple[Any, ...]


def _parse_dict_index(indexer: Mapping[AxisName, Any]) -> _DictIndex:
  """Validates a dict-style index and splits it by entry kind."""
  introduced: list[AxisName] = []
  sliced: list[AxisName] = []
  indexed: list[AxisName] = []
  slices: list[slice] = []
  indices: list[Any] = []
  for name, index in indexer.items():
    if index is None:
      introduced.append(name)
    elif isinstance(index, slice):
      sliced.append(name)
      slices.append(index)
    elif isinstance(index, int) or (
        isinstance(index, (jax.Array, np.ndarray, NamedArrayBase))
        and jnp.issubdtype(index.dtype, jnp.integer)
    ):
      indexed.append(name)
      indices.append(index)
    else:
      raise TypeError(
          "Unsupported index for a named axis using dict-style index: expected"
          " a slice, an integer, an integer array, or None, but got"
          f" {index}"
      )
  return _DictIndex(
      introduced=tuple(introduced),
      sliced=tuple(sliced),
      indexed=tuple(indexed),
      positional_index=(*([None] * len(introduced)), *slices, *indices),
  )


def _positional_get(
    array: NamedArrayBase, indexer: Any, kwargs: Mapping[str, Any]
) -> NamedArray | NamedArrayView:
  if not isinstance(indexer, tuple):
    indexer = (indexer,)
  thunks, dynamic_values = _split_positional_index(
      indexer, convert_slice_bounds=True
  )
  return _jitted_nmapped_getitem(
      array, thunks, dynamic_values, _sorted_kwargs(kwargs)
  )


def _dict_get(
    array: NamedArrayBase,
    indexer: Mapping[AxisName, Any],
    kwargs: Mapping[str, Any],
) -> NamedArray | NamedArrayView:
  parsed = _parse_dict_index(indexer)
  untagged = array.untag_prefix(*parsed.sliced, *parsed.indexed)
  result = _positional_get(untagged, parsed.positional_index, kwargs)
  return result.tag_prefix(*parsed.introduced, *parsed.sliced)


def _positional_update(
    array: NamedArrayBase,
    indexer: Any,
    method: str,
    values: Any,
    kwargs: Mapping[str, Any],
) -> NamedArray | NamedArrayView:
  if not isinstance(indexer, tuple):
    indexer = (indexer,)
  thunks, dynamic_values = _split_positional_index(
      indexer, convert_slice_bounds=False
  )
  return _jitted_nmapped_update(
      array, thunks, dynamic_values, values, method, _sorted_kwargs(kwargs)
  )


def _indexed_positional_shape(
    positional_shape: tuple[int, ...], index: tuple[Any, ...]
) -> tuple[int, ...]:
  """Positional shape of `x[index]` for `x` of the given positional shape.

  Same result as `jax.eval_shape` of the (vectorized) indexing, computed with
  numpy on a zero-stride stand-in array, so nothing is traced or compiled.
  """
  stand_in_index: list[Any] = []
  for part in index:
    if part is None:
      stand_in_index.append(None)
    elif isinstance(part, slice):
      stand_in_index.append(
          slice(*(
              None if bound is None else int(bound)
              for bound in (part.start, part.stop, part.step)
          ))
      )
    elif isinstance(part, NamedArrayBase):
      stand_in_index.append(np.zeros(part.positional_shape, np.intp))
    elif isinstance(part, int):
      stand_in_index.append(0)
    else:
      stand_in_index.append(np.zeros(np.shape(part), np.intp))
  stand_in = np.broadcast_to(np.zeros((), np.bool_), positional_shape)
  return tuple(stand_in[tuple(stand_in_index)].shape)


def _dict_update(
    array: NamedArrayBase,
    indexer: Mapping[AxisName, Any],
    method: str,
    values: Any,
    kwargs: Mapping[str, Any],
) -> NamedArray | NamedArrayView:
  parsed = _parse_dict_index(indexer)
  value = values if isinstance(values, NamedArrayBase) else wrap(values)
  untagged = array.untag_prefix(*parsed.sliced, *parsed.indexed)
  # Positional shape of `array[indexer]`: introduced and sliced names are
  # named again in that result, so they are not positional.
  result_shape = _indexed_positional_shape(
      untagged.positional_shape, parsed.positional_index
  )[len(parsed.introduced) + len(parsed.sliced) :]
  value_shape = tuple(value.positional_shape)
  if len(value_shape) > len(result_shape) or any(
      v != 1 and v != r
      for v, r in zip(reversed(value_shape), reversed(result_shape))
  ):
    raise ValueError(
        f"Cannot provide updates with positional shape {value_shape} for an"
        f" index whose result shape is {result_shape}! Update shape must be a"
        " suffix of the result shape (or broadcastable to it)."
    )
  if len(value_shape) < len(result_shape):
    value = value[(None,) * (len(result_shape) - len(value_shape))]
  missing = [
      name
      for name in (*parsed.introduced, *parsed.sliced)
      if name not in value.named_shape
  ]
  if missing:
    value = value[{name: None for name in missing}]
  updated = _positional_update(
      untagged,
      parsed.positional_index,
      method,
      value.untag_prefix(*parsed.introduced, *parsed.sliced),
      kwargs,
  )
  return updated.tag_prefix(*parsed.sliced, *parsed.indexed)


@dataclasses.dataclass
class _IndexUpdateHelper:
  """Helper returned by `arr.at`; indexing it gives an `_IndexUpdateRef`."""

  array: NamedArrayBase

  def __getitem__(self, indexer: Any) -> _IndexUpdateRef:
    return _IndexUpdateRef(self.array, indexer)


@dataclasses.dataclass
class _IndexUpdateRef:
  """Reference to `array[indexer]` supporting functional updates."""

  array: NamedArrayBase
  indexer: Any

  def _update(
      self, method: str, values: Any, kwargs: Mapping[str, Any]
  ) -> NamedArray | NamedArrayView:
    if isinstance(self.indexer, dict):
      return _dict_update(self.array, self.indexer, method, values, kwargs)
    return _positional_update(self.array, self.indexer, method, values, kwargs)

  def get(self, **kwargs: Any) -> NamedArray | NamedArrayView:
    """Returns `array[indexer]`, forwarding `kwargs` to JAX's `.at[].get`."""
    if isinstance(self.indexer, dict):
      return _dict_get(self.array, self.indexer, kwargs)
    return _positional_get(self.array, self.indexer, kwargs)

  def set(self, values: Any, /, **kwargs: Any) -> NamedArray | NamedArrayView:
    """Returns a copy with `array[indexer]` replaced by `values`."""
    return self._update("set", values, kwargs)

  def apply(self, values: Any, /, **kwargs: Any) -> NamedArray | NamedArrayView:
    """Forwards to JAX's `.at[].apply` (non-functional, as upstream)."""
    return self._update("apply", values, kwargs)

  def add(self, values: Any, /, **kwargs: Any) -> NamedArray | NamedArrayView:
    """Returns a copy with `values` added at `array[indexer]`."""
    return self._update("add", values, kwargs)

  def multiply(
      self, values: Any, /, **kwargs: Any
  ) -> NamedArray | NamedArrayView:
    """Returns a copy with `array[indexer]` multiplied by `values`."""
    return self._update("multiply", values, kwargs)

  def mul(self, values: Any, /, **kwargs: Any) -> NamedArray | NamedArrayView:
    """Alias of `multiply`."""
    return self._update("mul", values, kwargs)

  def divide(self, values: Any, /, **kwargs: Any) -> NamedArray | NamedArrayView:
    """Returns a copy with `array[indexer]` divided by `values`."""
    return self._update("divide", values, kwargs)

  def div(self, values: Any, /, **kwargs: Any) -> NamedArray | NamedArrayView:
    """Forwards to a JAX `.at[].div` (which does not exist, as upstream)."""
    return self._update("div", values, kwargs)

  def power(self, values: Any, /, **kwargs: Any) -> NamedArray | NamedArrayView:
    """Returns a copy with `array[indexer]` raised to the power `values`."""
    return self._update("power", values, kwargs)

  def min(self, values: Any, /, **kwargs: Any) -> NamedArray | NamedArrayView:
    """Returns a copy with `array[indexer]` replaced by the minimum."""
    return self._update("min", values, kwargs)

  def max(self, values: Any, /, **kwargs: Any) -> NamedArray | NamedArrayView:
    """Returns a copy with `array[indexer]` replaced by the maximum."""
    return self._update("max", values, kwargs)


################################################################################
# Named array classes
################################################################################


def _named_axes_handlers() -> Any:
  """Imports the treescope handlers lazily (only needed when rendering)."""
  return importlib.import_module(
      "penzai.core._treescope_handlers.named_axes_handlers"
  )


class NamedArrayBase(abc.ABC):
  """Common interface of `NamedArray` and `NamedArrayView`.

  Operations act on positional axes and are vectorized over named axes.
  """

  # Abstract interface.

  @property
  @abc.abstractmethod
  def dtype(self) -> np.dtype:
    """The dtype of the wrapped array."""

  @abc.abstractmethod
  def check_valid(self) -> None:
    """Raises `ValueError` if the internal invariants do not hold."""

  @property
  @abc.abstractmethod
  def named_shape(self) -> Mapping[AxisName, int]:
    """A new dict mapping each axis name to its size."""

  @property
  @abc.abstractmethod
  def positional_shape(self) -> tuple[int, ...]:
    """Sizes of the positional axes, in order."""

  @abc.abstractmethod
  def unwrap(self, *names: AxisName) -> jax.Array:
    """Returns the data as a plain array, named axes ordered as `names`."""

  @abc.abstractmethod
  def with_positional_prefix(self) -> NamedArray:
    """Returns an equivalent `NamedArray` (positional axes first)."""

  @abc.abstractmethod
  def as_namedarrayview(self) -> NamedArrayView:
    """Returns an equivalent `NamedArrayView` (no data movement)."""

  @abc.abstractmethod
  def untag(self, *axis_order: AxisName) -> NamedArray | NamedArrayView:
    """Turns the given named axes into positional axes, in that order."""

  @abc.abstractmethod
  def tag(self, *names: AxisName) -> NamedArray:
    """Gives names to all positional axes, in order."""

  # Axis manipulation built on the abstract interface.

  def untag_prefix(self, *axis_order: AxisName) -> NamedArray | NamedArrayView:
    """Makes the named axes `axis_order` the leading positional axes.

    Unlike `untag`, existing positional axes are allowed; they follow the
    newly untagged ones.
    """
    view = self.as_namedarrayview()
    placeholders = tuple(
        TmpPosAxisMarker() for _ in view.data_axis_for_logical_axis
    )
    return view.tag(*placeholders).untag(*axis_order, *placeholders)

  def tag_prefix(self, *axis_order: AxisName) -> NamedArray | NamedArrayView:
    """Names the first `len(axis_order)` positional axes; others stay."""
    view = self.as_namedarrayview()
    num_remaining = max(
        0, len(view.data_axis_for_logical_axis) - len(axis_order)
    )
    placeholders = tuple(TmpPosAxisMarker() for _ in range(num_remaining))
    return view.tag(*axis_order, *placeholders).untag(*placeholders)

  def order_as(self, *axis_order: AxisName) -> NamedArray:
    """Returns an equivalent `NamedArray` storing named axes in this order."""
    self.check_valid()
    placeholders = tuple(TmpPosAxisMarker() for _ in self.positional_shape)
    data = (
        self.tag(*placeholders).untag(*placeholders, *axis_order).unwrap()
    )
    named_shape = self.named_shape
    return NamedArray(
        named_axes=collections.OrderedDict(
            (name, named_shape[name]) for name in axis_order
        ),
        data_array=data,
    )

  def order_like(
      self, other: NamedArray | NamedArrayView
  ) -> NamedArray | NamedArrayView:
    """Returns an equivalent array with the same internal layout as `other`.

    Useful to make two arrays with equal shapes have equal pytree structure.
    """
    self.check_valid()
    other.check_valid()
    if isinstance(other, NamedArray):
      return self.order_as(*other.named_shape.keys())
    if isinstance(other, NamedArrayView):
      if len(self.positional_shape) != len(other.positional_shape):
        raise ValueError(
            "Calling `order_like` with a NamedArrayView requires the two"
            " arrays to have the same number of positional axes, but got"
            " positional shapes"
            f" self.positional_shape={self.positional_shape!r},"
            f" other.positional_shape={other.positional_shape!r}"
        )
      if set(self.named_shape.keys()) != set(other.named_shape.keys()):
        raise ValueError(
            "Calling `order_like` with a NamedArrayView requires the two"
            " arrays to have the axis names, but got named shapes"
            f" self.named_shape={self.named_shape!r},"
            f" other.named_shape={other.named_shape!r}"
        )
      view = self.as_namedarrayview()
      perm = [0] * len(view.data_shape)
      for own_axis, other_axis in zip(
          view.data_axis_for_logical_axis, other.data_axis_for_logical_axis
      ):
        perm[other_axis] = own_axis
      for name, other_axis in other.data_axis_for_name.items():
        perm[other_axis] = view.data_axis_for_name[name]
      data = view.data_array
      if perm != list(range(len(perm))):
        data = jnp.transpose(data, perm)
      return NamedArrayView(
          data_shape=tuple(data.shape),
          data_axis_for_logical_axis=tuple(other.data_axis_for_logical_axis),
          data_axis_for_name=dict(other.data_axis_for_name),
          data_array=data,
      )
    raise TypeError(
        "`order_like` requires a NamedArray or NamedArrayView, but got"
        f" {type(other).__name__}"
    )

  def broadcast_to(
      self,
      positional_shape: Sequence[int] = (),
      named_shape: Mapping[AxisName, int] | None = None,
  ) -> NamedArrayBase:
    """Broadcasts positional axes (numpy rules) and adds new named axes.

    Existing named axes must already have the requested size.
    """
    positional_shape = tuple(positional_shape)
    requested = dict(named_shape or {})
    if self.positional_shape == positional_shape and (
        dict(self.named_shape) == requested
    ):
      return self
    view = self.as_namedarrayview()
    own_named_shape = view.named_shape
    bad_names = [
        name
        for name, size in requested.items()
        if name in own_named_shape and own_named_shape[name] != size
    ]
    if bad_names:
      raise ValueError(
          "\n".join([
              "Inconsistent named axes in a call to"
              f" nmap({jnp.broadcast_to}) for axes {bad_names}:",
              f"  args[0].named_shape == {own_named_shape}",
              f"  args[1].named_shape == {requested}",
          ])
      )
    new_names = [name for name in requested if name not in own_named_shape]
    names = (*own_named_shape.keys(), *new_names)
    # Lay out the data as [own names..., new names (size 1)..., positional...].
    perm = (
        *view.data_axis_for_name.values(),
        *view.data_axis_for_logical_axis,
    )
    data = view.data_array
    if perm != tuple(range(len(perm))):
      data = jnp.transpose(data, perm)
    own_positional = view.positional_shape
    padding = max(0, len(positional_shape) - len(own_positional))
    data = jnp.reshape(
        data,
        (
            *own_named_shape.values(),
            *([1] * len(new_names)),
            *([1] * padding),
            *own_positional,
        ),
    )
    target_shape = (
        *own_named_shape.values(),
        *(requested[name] for name in new_names),
        *positional_shape,
    )
    return _wrap_nmap_output(jnp.broadcast_to(data, target_shape), names)

  def broadcast_like(
      self, other: NamedArrayBase | jax.typing.ArrayLike
  ) -> NamedArrayBase:
    """Broadcasts to the positional and named shape of `other`."""
    if isinstance(other, NamedArrayBase):
      return self.broadcast_to(other.positional_shape, other.named_shape)
    return self.broadcast_to(jnp.shape(other), {})

  def canonicalize(self) -> NamedArray:
    """Returns a `NamedArray` with named axes in sorted order."""
    return self.order_as(*sorted(self.named_shape.keys()))  # type: ignore[type-var]

  # Indexing.

  def __getitem__(self, indexer: Any) -> NamedArray | NamedArrayView:
    """Indexes positional axes (non-dict index) or named axes (dict index)."""
    self.check_valid()
    return self.at[indexer].get()

  @property
  def at(self) -> _IndexUpdateHelper:
    """Helper for functional indexed updates, like JAX's `.at`."""
    self.check_valid()
    return _IndexUpdateHelper(self)

  def __iter__(self) -> typing.Iterator[NamedArray | NamedArrayView]:
    positional_shape = self.positional_shape
    if not positional_shape:
      raise ValueError("Cannot iterate over an array with no positional axes!")
    for i in range(positional_shape[0]):
      yield self[i]

  # Treescope integration.

  def __treescope_repr__(self, path: str | None, subtree_renderer: Any) -> Any:
    """Renders this named array with treescope."""
    try:
      handlers = _named_axes_handlers()
    except ImportError:
      return struct.Struct.__treescope_repr__(self, path, subtree_renderer)  # type: ignore[arg-type]
    return handlers.handle_named_arrays(self, path, subtree_renderer)

  def __treescope_ndarray_adapter__(self) -> Any:
    """Returns the treescope array adapter for named arrays."""
    return _named_axes_handlers().NamedArrayAdapter()

  # Operators (elementwise, vectorized over names).

  __lt__ = _elementwise_op(operator.lt, "jax.Array.__lt__")
  __le__ = _elementwise_op(operator.le, "jax.Array.__le__")
  __eq__ = _elementwise_op(operator.eq, "jax.Array.__eq__")  # type: ignore[assignment]
  __ne__ = _elementwise_op(operator.ne, "jax.Array.__ne__")  # type: ignore[assignment]
  __ge__ = _elementwise_op(operator.ge, "jax.Array.__ge__")
  __gt__ = _elementwise_op(operator.gt, "jax.Array.__gt__")

  __add__ = _elementwise_op(operator.add, "jax.Array.__add__")
  __sub__ = _elementwise_op(operator.sub, "jax.Array.__sub__")
  __mul__ = _elementwise_op(operator.mul, "jax.Array.__mul__")
  __truediv__ = _elementwise_op(operator.truediv, "jax.Array.__truediv__")
  __floordiv__ = _elementwise_op(operator.floordiv, "jax.Array.__floordiv__")
  __mod__ = _elementwise_op(operator.mod, "jax.Array.__mod__")
  __divmod__ = _elementwise_op(divmod, "jax.Array.__divmod__")
  __pow__ = _elementwise_op(operator.pow, "jax.Array.__pow__")
  __lshift__ = _elementwise_op(operator.lshift, "jax.Array.__lshift__")
  __rshift__ = _elementwise_op(operator.rshift, "jax.Array.__rshift__")
  __and__ = _elementwise_op(operator.and_, "jax.Array.__and__")
  __or__ = _elementwise_op(operator.or_, "jax.Array.__or__")
  __xor__ = _elementwise_op(operator.xor, "jax.Array.__xor__")

  __radd__ = _elementwise_op(_swapped_binop(operator.add), "jax.Array.__radd__")
  __rsub__ = _elementwise_op(_swapped_binop(operator.sub), "jax.Array.__rsub__")
  __rmul__ = _elementwise_op(_swapped_binop(operator.mul), "jax.Array.__rmul__")
  __rtruediv__ = _elementwise_op(
      _swapped_binop(operator.truediv), "jax.Array.__rtruediv__"
  )
  __rfloordiv__ = _elementwise_op(
      _swapped_binop(operator.floordiv), "jax.Array.__rfloordiv__"
  )
  __rmod__ = _elementwise_op(_swapped_binop(operator.mod), "jax.Array.__rmod__")
  __rdivmod__ = _elementwise_op(_swapped_binop(divmod), "jax.Array.__rdivmod__")
  __rpow__ = _elementwise_op(_swapped_binop(operator.pow), "jax.Array.__rpow__")
  __rlshift__ = _elementwise_op(
      _swapped_binop(operator.lshift), "jax.Array.__rlshift__"
  )
  __rrshift__ = _elementwise_op(
      _swapped_binop(operator.rshift), "jax.Array.__rrshift__"
  )
  __rand__ = _elementwise_op(_swapped_binop(operator.and_), "jax.Array.__rand__")
  __ror__ = _elementwise_op(_swapped_binop(operator.or_), "jax.Array.__ror__")
  __rxor__ = _elementwise_op(_swapped_binop(operator.xor), "jax.Array.__rxor__")

  __abs__ = _elementwise_op(operator.abs, "jax.Array.__abs__")
  __neg__ = _elementwise_op(operator.neg, "jax.Array.__neg__")
  __pos__ = _elementwise_op(operator.pos, "jax.Array.__pos__")
  __invert__ = _elementwise_op(operator.inv, "jax.Array.__invert__")

  # Scalar conversions (only for arrays without any axes).

  __bool__ = _wrap_scalar_conversion(bool)
  __complex__ = _wrap_scalar_conversion(complex)
  __int__ = _wrap_scalar_conversion(int)
  __float__ = _wrap_scalar_conversion(float)
  __index__ = _wrap_scalar_conversion(operator.index)

  # Wrapped array methods (positional axes only, vectorized over names).

  all = _wrap_array_method("all")
  any = _wrap_array_method("any")
  argmax = _wrap_array_method("argmax")
  argmin = _wrap_array_method("argmin")
  argpartition = _wrap_array_method("argpartition")
  argsort = _wrap_array_method("argsort")
  astype = _wrap_array_method("astype")
  choose = _wrap_array_method("choose")
  clip = _wrap_array_method("clip")
  compress = _wrap_array_method("compress")
  conj = _wrap_array_method("conj")
  conjugate = _wrap_array_method("conjugate")
  cumprod = _wrap_array_method("cumprod")
  cumsum = _wrap_array_method("cumsum")
  diagonal = _wrap_array_method("diagonal")
  dot = _wrap_array_method("dot")
  flatten = _wrap_array_method("flatten")
  imag = _wrap_array_method("imag")
  item = _wrap_array_method("item")
  max = _wrap_array_method("max")
  mean = _wrap_array_method("mean")
  min = _wrap_array_method("min")
  nonzero = _wrap_array_method("nonzero")
  prod = _wrap_array_method("prod")
  ptp = _wrap_array_method("ptp")
  ravel = _wrap_array_method("ravel")
  real = _wrap_array_method("real")
  repeat = _wrap_array_method("repeat")
  reshape = _wrap_array_method("reshape")
  round = _wrap_array_method("round")
  searchsorted = _wrap_array_method("searchsorted")
  sort = _wrap_array_method("sort")
  squeeze = _wrap_array_method("squeeze")
  std = _wrap_array_method("std")
  sum = _wrap_array_method("sum")
  swapaxes = _wrap_array_method("swapaxes")
  take = _wrap_array_method("take")
  trace = _wrap_array_method("trace")
  transpose = _wrap_array_method("transpose")
  T = _wrap_array_method("T")
  mT = _wrap_array_method("mT")
  var = _wrap_array_method("var")
  view = _wrap_array_method("view")


def _check_data_array(data_array: Any, class_name: str) -> None:
  if not hasattr(data_array, "shape") or not hasattr(data_array, "dtype"):
    raise ValueError(
        f"{class_name}.data_array must contain a jax or numpy array (or at"
        " least something with a shape and dtype), not"
        f" {type(data_array)}"
    )


def _check_no_integer_names(names: typing.Iterable[Any]) -> None:
  for name in names:
    if isinstance(name, int):
      raise ValueError(_INTEGER_NAME_MESSAGE)


@struct.pytree_dataclass
class NamedArray(NamedArrayBase, struct.Struct):
  """A named array whose positional axes are a prefix of the data's axes.

  Attributes:
    named_axes: Names and sizes of the trailing data axes, in data order.
    data_array: The wrapped array; its leading axes are the positional axes.
  """

  named_axes: collections.OrderedDict[AxisName, int] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  data_array: jax.Array

  __eq__ = NamedArrayBase.__eq__  # type: ignore[assignment]

  @classmethod
  def wrap(cls, array: jax.typing.ArrayLike, *names: AxisName) -> NamedArray:
    """Wraps a plain array, optionally naming all of its axes."""
    wrapped = cls(
        named_axes=collections.OrderedDict(), data_array=jnp.asarray(array)
    )
    if names:
      return wrapped.tag(*names)
    return wrapped

  @property
  def dtype(self) -> np.dtype:
    """The dtype of the wrapped array."""
    return self.data_array.dtype

  def check_valid(self) -> None:
    """Raises `ValueError` if the invariants of `NamedArray` do not hold."""
    _check_data_array(self.data_array, "NamedArray")
    named_axes = self.named_axes
    if not isinstance(named_axes, collections.OrderedDict) or not all(
        isinstance(size, int) for size in named_axes.values()
    ):
      raise ValueError(
          "NamedArray.named_axes must be an ordered dictionary of named axis"
          " shapes"
      )
    _check_no_integer_names(named_axes.keys())
    data_shape = tuple(self.data_array.shape)
    sizes = tuple(named_axes.values())
    if len(sizes) > len(data_shape) or (
        data_shape[len(data_shape) - len(sizes) :] != sizes
    ):
      raise ValueError(
          "The axis sizes in `named_axes` must exactly match a suffix  of the"
          f" data array's shape, but {sizes} was not a suffix of {data_shape}"
      )

  @property
  def named_shape(self) -> Mapping[AxisName, int]:
    """A new dict mapping each axis name to its size."""
    return dict(self.named_axes)

  @property
  def positional_shape(self) -> tuple[int, ...]:
    """Sizes of the positional (leading) axes."""
    self.check_valid()
    shape = tuple(self.data_array.shape)
    return shape[: len(shape) - len(self.named_axes)]

  def unwrap(self, *names: AxisName) -> jax.Array:
    """Returns the plain data array, with named axes ordered as `names`.

    Without names, the array must have no named axes.
    """
    self.check_valid()
    if names:
      if self.positional_shape:
        raise ValueError(
            "Cannot unwrap a NamedArray by providing an axis name ordering if"
            " it already has a positional shape. For advanced axis name"
            " manipulation, try using `untag` and `tag` directly."
        )
      untagged = self.untag(*names)
      remaining = untagged.named_shape
      if remaining:
        raise ValueError(
            "When calling `unwrap` with axis names, a position must be given"
            f" for every axis name. Unassigned names: {remaining}"
        )
      return untagged.unwrap()
    if self.named_axes:
      raise ValueError(
          "To unwrap a NamedArray with nonempty named shape, an ordering for"
          f" its named axes must be provided. Named shape: {self.named_axes}"
      )
    return self.data_array

  def with_positional_prefix(self) -> NamedArray:
    """Returns `self` (a `NamedArray` already has positional axes first)."""
    return self

  def as_namedarrayview(self) -> NamedArrayView:
    """Returns the equivalent `NamedArrayView` without moving data (L4)."""
    self.check_valid()
    data_shape = tuple(self.data_array.shape)
    num_positional = len(data_shape) - len(self.named_axes)
    return NamedArrayView(
        data_shape=data_shape,
        data_axis_for_logical_axis=tuple(range(num_positional)),
        data_axis_for_name={
            name: num_positional + i for i, name in enumerate(self.named_axes)
        },
        data_array=self.data_array,
    )

  def untag(self, *axis_order: AxisName) -> NamedArray | NamedArrayView:
    """Turns the given named axes into positional axes, in that order."""
    return self.as_namedarrayview().untag(*axis_order)

  def tag(self, *names: AxisName) -> NamedArray:
    """Gives names to all positional axes, in order."""
    return self.as_namedarrayview().tag(*names)


@struct.pytree_dataclass
class NamedArrayView(NamedArrayBase, struct.Struct):
  """A named array whose positional and named axes may be at any data axis.

  Attributes:
    data_shape: Shape of `data_array`.
    data_axis_for_logical_axis: Data axis of each positional axis, in order.
    data_axis_for_name: Data axis of each named axis.
    data_array: The wrapped array.
  """

  data_shape: tuple[int, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  data_axis_for_logical_axis: tuple[int, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  data_axis_for_name: dict[AxisName, int] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  data_array: jax.Array

  __eq__ = NamedArrayBase.__eq__  # type: ignore[assignment]

  @property
  def dtype(self) -> np.dtype:
    """The dtype of the wrapped array."""
    return self.data_array.dtype

  def check_valid(self) -> None:
    """Raises `ValueError` if the invariants of `NamedArrayView` do not hold."""
    _check_data_array(self.data_array, "NamedArrayView")
    actual_shape = tuple(self.data_array.shape)
    if self.data_shape != actual_shape:
      raise ValueError(
          f"Expected data_array to have shape {self.data_shape}, but it has"
          f" shape {actual_shape}. Modifying the shape of the data array of a"
          " NamedArrayView directly is not allowed; use `nmap` instead, or"
          " call `with_positional_prefix` if you need to manipulate the"
          " positional axes as prefix axes."
      )
    all_axes = sorted(
        (*self.data_axis_for_logical_axis, *self.data_axis_for_name.values())
    )
    if all_axes != list(range(len(self.data_shape))):
      raise ValueError(
          "Every axis index into `data_shape` must appear exactly once in"
          " either `data_axis_for_logical_axis` or `data_axis_for_name`."
      )
    _check_no_integer_names(self.data_axis_for_name.keys())

  @property
  def named_shape(self) -> Mapping[AxisName, int]:
    """A new dict mapping each axis name to its size."""
    data_shape = self.data_shape
    return {
        name: data_shape[data_axis]
        for name, data_axis in self.data_axis_for_name.items()
    }

  @property
  def positional_shape(self) -> tuple[int, ...]:
    """Sizes of the positional axes, in logical order."""
    data_shape = self.data_shape
    return tuple(data_shape[axis] for axis in self.data_axis_for_logical_axis)

  def unwrap(self, *names: AxisName) -> jax.Array:
    """Returns a plain array, with named axes ordered as `names`."""
    self.check_valid()
    if names:
      if self.data_axis_for_logical_axis:
        raise ValueError(
            "Cannot unwrap a NamedArrayView by providing an axis name ordering"
            " if it already has a positional shape. For advanced axis name"
            " manipulation, try using `untag` and `tag` directly."
        )
      untagged = self.untag(*names)
      remaining = untagged.named_shape
      if remaining:
        raise ValueError(
            "When calling `unwrap` with axis names, a position must be given"
            f" for every axis name. Unassigned names: {remaining}"
        )
      return untagged.unwrap()
    if self.data_axis_for_name:
      raise ValueError(
          "To unwrap a NamedArrayView with nonempty named shape, an ordering"
          " for its named axes must be provided. Named shape:"
          f" {self.named_shape}"
      )
    return self.with_positional_prefix().unwrap()

  def with_positional_prefix(self) -> NamedArray:
    """Returns a `NamedArray`, transposing only if needed (L3)."""
    self.check_valid()
    named_items = sorted(
        self.data_axis_for_name.items(), key=lambda item: item[1]
    )
    perm = (
        *self.data_axis_for_logical_axis,
        *(data_axis for _, data_axis in named_items),
    )
    data = self.data_array
    if perm != tuple(range(len(perm))):
      data = jnp.transpose(data, perm)
    return NamedArray(
        named_axes=collections.OrderedDict(
            (name, self.data_shape[data_axis]) for name, data_axis in named_items
        ),
        data_array=data,
    )

  def as_namedarrayview(self) -> NamedArrayView:
    """Returns `self`."""
    return self

  def untag(self, *axis_order: AxisName) -> NamedArray | NamedArrayView:
    """Turns the given named axes into positional axes, without moving data."""
    self.check_valid()
    if self.data_axis_for_logical_axis:
      raise ValueError(
          "`untag` cannot be used to introduce positional axes for a"
          " NamedArray (or NamedArrayView) that already has positional axes."
          " Please assign names to the existing positional axes first using"
          " `tag`."
      )
    if not axis_order:
      return self.with_positional_prefix()
    requested = set(axis_order)
    if len(requested) != len(axis_order):
      raise ValueError(_REPEATS_MESSAGE)
    bad_names = requested - set(self.data_axis_for_name.keys())
    if bad_names:
      raise ValueError(
          f"Requested axis names {bad_names} are not present in the array."
      )
    return NamedArrayView(
        data_shape=self.data_shape,
        data_axis_for_logical_axis=tuple(
            self.data_axis_for_name[name] for name in axis_order
        ),
        data_axis_for_name={
            name: data_axis
            for name, data_axis in self.data_axis_for_name.items()
            if name not in requested
        },
        data_array=self.data_array,
    )

  def tag(self, *names: AxisName) -> NamedArray:
    """Names all positional axes, without moving data (L1)."""
    self.check_valid()
    if len(names) != len(self.data_axis_for_logical_axis):
      raise ValueError(
          "There must be exactly as many names given to `tag` as there are"
          f" positional axes in the array, but got {names} for positional"
          f" shape {self.positional_shape}"
      )
    _check_no_integer_names(names)
    existing = tuple(self.data_axis_for_name.keys())
    counts = collections.Counter((*existing, *names))
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
      raise ValueError(
          "Repeated axis names are not allowed; original names were"
          f" {existing} and new names passed to tag were {names}; repeated:"
          f" {repeated}"
      )
    name_for_data_axis: dict[int, AxisName] = {
        data_axis: name for name, data_axis in self.data_axis_for_name.items()
    }
    for name, data_axis in zip(names, self.data_axis_for_logical_axis):
      name_for_data_axis[data_axis] = name
    return NamedArray(
        named_axes=collections.OrderedDict(
            (name_for_data_axis[i], size)
            for i, size in enumerate(self.data_shape)
        ),
        data_array=self.data_array,
    )


################################################################################
# Module-level functions
################################################################################

wrap = NamedArray.wrap


def full(
    named_shape: Mapping[AxisName, int],
    fill_value: jax.typing.ArrayLike,
    dtype: np.DTypeLike | None = None,  # type: ignore[name-defined]
) -> NamedArray:
  """A named array of the given named shape filled with `fill_value`."""
  return NamedArray(
      named_axes=collections.OrderedDict(named_shape),
      data_array=jnp.full(tuple(named_shape.values()), fill_value, dtype=dtype),
  )


def zeros(
    named_shape: Mapping[AxisName, int],
    dtype: np.DTypeLike | None = None,  # type: ignore[name-defined]
) -> NamedArray:
  """A named array of zeros with the given named shape."""
  return NamedArray(
      named_axes=collections.OrderedDict(named_shape),
      data_array=jnp.zeros(tuple(named_shape.values()), dtype=dtype),
  )


def ones(
    named_shape: Mapping[AxisName, int],
    dtype: np.DTypeLike | None = None,  # type: ignore[name-defined]
) -> NamedArray:
  """A named array of ones with the given named shape."""
  return NamedArray(
      named_axes=collections.OrderedDict(named_shape),
      data_array=jnp.ones(tuple(named_shape.values()), dtype=dtype),
  )


def arange(
    name: str,
    start: int,
    stop: int | None = None,
    step: int | None = None,
    dtype: jax.typing.DTypeLike | None = None,
) -> NamedArray:
  """A one-axis named array of evenly spaced values (like `jnp.arange`)."""
  return wrap(jnp.arange(start, stop, step, dtype)).tag(name)


def random_split(
    key: jax.Array | NamedArrayBase,
    named_shape: Mapping[AxisName, int] | Sequence[tuple[AxisName, int]],
) -> NamedArray | NamedArrayView:
  """Splits a PRNG key into a named array of keys with new named axes."""
  if isinstance(named_shape, collections.OrderedDict):
    items = list(named_shape.items())
  elif isinstance(named_shape, Mapping):
    try:
      items = sorted(named_shape.items(), key=lambda item: item[0])
    except TypeError as exc:
      raise ValueError(
          "Unordered mappings must have sortable axis names when using"
          " `random_split`. If necessary, you can specify a particular"
          " ordering using a collections.OrderedDict or a tuple of (name,"
          " size) pairs."
      ) from exc
  else:
    items = [(name, size) for name, size in named_shape]
  names = [name for name, _ in items]
  sizes = [size for _, size in items]
  total = int(np.prod(sizes, dtype=np.int64))
  split_keys = nmap(jax.random.split)(key, total)
  reshaped = nmap(lambda k: jnp.reshape(k, (*sizes, *k.shape[1:])))(split_keys)
  return reshaped.tag_prefix(*names)


def _check_same_positional_ndim(arrays: Sequence[NamedArrayBase]) -> int:
  ndims = {len(array.positional_shape) for array in arrays}
  if len(ndims) != 1:
    raise ValueError(
        "All arrays must have the same number of positional axes, but got"
        f" {ndims}"
    )
  (ndim,) = ndims
  return ndim


def concatenate(
    arrays: Sequence[NamedArrayBase], axis_name: AxisName
) -> NamedArray | NamedArrayView:
  """Concatenates named arrays along an existing named axis."""
  ndim = _check_same_positional_ndim(arrays)
  placeholders = tuple(TmpPosAxisMarker() for _ in range(ndim))
  moved = [array.tag(*placeholders).untag(axis_name) for array in arrays]
  return (
      nmap(jnp.concatenate)(moved).tag(axis_name).untag(*placeholders)
  )


def stack(
    arrays: Sequence[NamedArrayBase], axis_name: AxisName
) -> NamedArray | NamedArrayView:
  """Stacks named arrays along a new named axis."""
  ndim = _check_same_positional_ndim(arrays)
  if not ndim:
    return nmap(jnp.stack)(list(arrays)).tag(axis_name)
  placeholders = tuple(TmpPosAxisMarker() for _ in range(ndim))
  moved = [array.tag(*placeholders) for array in arrays]
  return nmap(jnp.stack)(moved).tag(axis_name).untag(*placeholders)


def unstack(
    array: NamedArrayBase, axis_name: AxisName
) -> Sequence[NamedArray | NamedArrayView]:
  """Splits a named array into a list of slices along a named axis."""
  return [
      array[{axis_name: i}] for i in range(array.named_shape[axis_name])
  ]


def order_like(value_tree: Any, reference_tree: Any) -> Any:
  """Orders every named array in `value_tree` like its counterpart."""
  return jax.tree_util.tree_map(
      lambda value, reference: (
          value.order_like(reference)
          if isinstance(value, NamedArrayBase)
          else value
      ),
      value_tree,
      reference_tree,
      is_leaf=is_namedarray,
  )


def scan(
    f: Callable[[Any, Any], Any],
    axis: AxisName,
    init: Any,
    xs: Any = None,
    **scan_kwargs: Any,
) -> Any:
  """`jax.lax.scan` over a named axis of every named array in `xs`."""
  xs_leaves, xs_treedef = jax.tree_util.tree_flatten(xs, is_leaf=is_namedarray)
  if not all(isinstance(leaf, NamedArrayBase) for leaf in xs_leaves):
    raise ValueError("All leaves of `xs` must be Penzai named arrays.")
  prefixed_xs = jax.tree_util.tree_unflatten(
      xs_treedef,
      [leaf.untag_prefix(axis).with_positional_prefix() for leaf in xs_leaves],
  )

  def with_prefix(tree: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda leaf: (
            leaf.with_positional_prefix()
            if isinstance(leaf, NamedArrayBase)
            else leaf
        ),
        tree,
        is_leaf=is_namedarray,
    )

  def step(carry: Any, x: Any) -> tuple[Any, Any]:
    new_carry, y = f(carry, x)
    return order_like(new_carry, carry), with_prefix(y)

  final_carry, ys = jax.lax.scan(step, init, prefixed_xs, **scan_kwargs)
  ys = jax.tree_util.tree_map(
      lambda leaf: (
          leaf if isinstance(leaf, NamedArrayBase) else wrap(leaf)
      ).tag_prefix(axis),
      ys,
      is_leaf=is_namedarray,
  )
  return final_carry, ys
