"""Frozen pytree dataclasses: the `Struct` base class and `pytree_dataclass`.

Every penzai model object is a `Struct`: an immutable dataclass registered as a
JAX pytree (with keys), whose non-static fields are pytree children.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
import operator
import typing
from typing import Any, Callable, Hashable, Literal, Sequence, Type, TypeVar, overload

import jax
import typing_extensions

if typing.TYPE_CHECKING:
  from penzai.core import selectors

T = TypeVar("T")

PYTREE_DATACLASS_INFO_ATTR = "__penzai_pytree_dataclass_info__"


class _FieldLayout:
  """Precomputed per-class field information used by (un)flattening.

  Flattening runs on every JAX transformation call, so the field split and
  the default keys are computed once per class instead of on every call.
  """

  __slots__ = (
      "field_names",
      "child_names",
      "static_names",
      "default_keys",
  )

  def __init__(self, cls: type[Any]):
    fields = dataclasses.fields(cls)
    self.field_names = tuple(field.name for field in fields)
    self.child_names = tuple(
        field.name for field in fields if is_pytree_node_field(field)
    )
    self.static_names = tuple(
        field.name for field in fields if not is_pytree_node_field(field)
    )
    self.default_keys = tuple(
        jax.tree_util.GetAttrKey(name) for name in self.child_names
    )


_FIELD_LAYOUT_CACHE: dict[type[Any], _FieldLayout] = {}


def _field_layout(cls: type[Any]) -> _FieldLayout:
  """Returns the cached field layout of a dataclass type."""
  layout = _FIELD_LAYOUT_CACHE.get(cls)
  if layout is None:
    layout = _FieldLayout(cls)
    _FIELD_LAYOUT_CACHE[cls] = layout
  return layout


def is_pytree_dataclass_type(cls: type[Any]) -> bool:
  """Whether `cls` itself (not just a parent) was decorated by `pytree_dataclass`."""
  return isinstance(cls, type) and PYTREE_DATACLASS_INFO_ATTR in cls.__dict__


class PyTreeDataclassSafetyError(Exception):
  """Raised when a `pytree_dataclass` definition is likely to be a mistake."""


def _safe_inherited_init(cls: type[Any]) -> Any:
  """Returns the inherited `__init__` that decorating `cls` may safely replace."""
  for base in cls.__mro__[1:]:
    if is_pytree_dataclass_type(base):
      info = base.__dict__[PYTREE_DATACLASS_INFO_ATTR]
      generated = info.get("generated_init")
      return object.__init__ if generated is None else generated
  return object.__init__


def _check_field_annotations(
    cls: type[Any], has_implicitly_inherited_fields: bool
) -> None:
  """Checks that the dataclass fields are exactly this class's annotations."""
  name = cls.__name__
  field_names = [field.name for field in dataclasses.fields(cls)]
  explicit = list(inspect.get_annotations(cls).keys())
  if has_implicitly_inherited_fields:
    if all(field_name in explicit for field_name in field_names):
      raise PyTreeDataclassSafetyError(
          f"{name} was constructed with `has_implicitly_inherited_fields=True`,"
          " but it does not have any implicitly inherited fields."
      )
  else:
    field_set = set(field_names)
    explicit_fields = [ann for ann in explicit if ann in field_set]
    if explicit_fields != field_names:
      raise PyTreeDataclassSafetyError(
          f"{name} has missing or badly-ordered dataclass attributes: the"
          f" explicit field annotations {explicit_fields} don't match the"
          f" inferred dataclass fields {field_names}.\n\nThis usually means"
          f" that {name} inherits dataclass fields from a parent class, which"
          " makes the constructor's argument order hard to see from the class"
          " definition. If this is intentional, pass"
          " `has_implicitly_inherited_fields=True` to `@pytree_dataclass` to"
          " silence this check; otherwise, annotate every field (including"
          " inherited ones) explicitly in the order they should appear."
      )


def _install_mutable_init_proxy(cls: type[Any], original_init: Any) -> None:
  """Makes the user's `__init__` run on a mutable proxy of the frozen class."""
  if "_MutableInitProxy" in cls.__dict__:
    raise ValueError(
        "Cannot create a mutable init proxy if the _MutableInitProxy class"
        " attribute is already defined!"
    )
  metaclass: Any = type(cls)
  proxy_cls = metaclass(
      f"{cls.__name__}._MutableInitProxy",
      (cls,),
      {
          "__setattr__": object.__setattr__,
          "__delattr__": object.__delattr__,
          "__hash__": None,
          "__init__": original_init,
          "__module__": cls.__module__,
          "__qualname__": f"{cls.__qualname__}._MutableInitProxy",
          PYTREE_DATACLASS_INFO_ATTR: {"is_init_proxy": True},
          "_MutableInitProxy": None,
      },
  )
  type.__setattr__(cls, "_MutableInitProxy", proxy_cls)
  field_names = [field.name for field in dataclasses.fields(cls)]

  @functools.wraps(original_init)
  def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
    proxy = proxy_cls(*args, **kwargs)
    for field_name in field_names:
      try:
        value = getattr(proxy, field_name)
      except AttributeError:
        raise AttributeError(
            f'A value for field "{field_name}" was not set during __init__! All'
            " dataclass fields must be set in __init__ when using"
            " `pytree_dataclass`."
        ) from None
      object.__setattr__(self, field_name, value)

  type.__setattr__(cls, "__init__", __init__)


class _ConstructorSignature:
  """Class-only `__signature__`: the constructor's signature without `self`.

  The struct metaclass defines `__call__`, which would otherwise make
  `inspect.signature(cls)` report `(*args, **kwargs)`. Instances do not see
  it, so `inspect.signature(layer)` still describes `__call__`.
  """

  def __init__(self, init: Callable[..., Any]):
    self._init = init
    self._signature: inspect.Signature | None = None

  def __get__(self, instance: Any, owner: type[Any]) -> inspect.Signature:
    if instance is not None:
      raise AttributeError("__signature__")
    if self._signature is None:
      sig = inspect.signature(self._init)
      self._signature = sig.replace(parameters=list(sig.parameters.values())[1:])
    return self._signature


@overload
def pytree_dataclass(
    cls: type[T],
    /,
) -> type[T]:
  ...


@overload
def pytree_dataclass(
    cls: None = None,
    /,
    *,
    has_implicitly_inherited_fields: bool = False,
    use_mutable_proxy_in_init: bool = True,
    overwrite_parent_init: bool = False,
    init: bool = True,
    repr: bool | Literal["auto"] = "auto",  # pylint: disable=redefined-builtin
    eq: bool = True,
    order: bool = False,
    match_args: bool = False,
    kw_only: bool = False,
) -> Callable[[type[T]], type[T]]:
  ...


@typing_extensions.dataclass_transform(
    frozen_default=True, field_specifiers=(dataclasses.field,)
)
def pytree_dataclass(
    cls: type[Any] | None = None,
    /,
    *,
    has_implicitly_inherited_fields: bool = False,
    use_mutable_proxy_in_init: bool = True,
    overwrite_parent_init: bool = False,
    init: bool = True,
    repr: bool | Literal["auto"] = "auto",  # pylint: disable=redefined-builtin
    eq: bool = True,
    order: bool = False,
    match_args: bool = False,
    kw_only: bool = False,
) -> type[Any] | Callable[[type[Any]], type[Any]]:
  """Turns a class into a frozen dataclass registered as a keyed JAX pytree.

  Fields are pytree children unless declared with
  `dataclasses.field(metadata={"pytree_node": False})`. Usable bare
  (`@pytree_dataclass`) or with options (`@pytree_dataclass(kw_only=True)`).
  Safety checks catch accidental overwriting of inherited custom `__init__`s
  and implicitly inherited (hence invisible) fields.

  Args:
    cls: The class to decorate; if None, returns a decorator.
    has_implicitly_inherited_fields: Allow fields that are inherited from a
      parent dataclass without being re-annotated here.
    use_mutable_proxy_in_init: Run a custom `__init__` on a mutable proxy so
      it can use plain attribute assignment.
    overwrite_parent_init: Allow replacing an inherited custom `__init__`.
    init: Generate an `__init__` (as in `dataclasses.dataclass`).
    repr: Generate a dataclass `__repr__`; "auto" keeps `Struct.__repr__` for
      Structs.
    eq: Generate `__eq__` (and a field-based `__hash__`).
    order: Generate ordering methods.
    match_args: Generate `__match_args__`.
    kw_only: Make all fields keyword-only.

  Returns:
    The decorated class (same object), or a decorator if `cls` is None.
  """
  if cls is None:
    return functools.partial(
        pytree_dataclass,
        has_implicitly_inherited_fields=has_implicitly_inherited_fields,
        use_mutable_proxy_in_init=use_mutable_proxy_in_init,
        overwrite_parent_init=overwrite_parent_init,
        init=init,
        repr=repr,
        eq=eq,
        order=order,
        match_args=match_args,
        kw_only=kw_only,
    )

  if PYTREE_DATACLASS_INFO_ATTR in cls.__dict__:
    raise ValueError("Cannot apply pytree_dataclass twice to the same class!")

  original_init = cls.__dict__.get("__init__")

  if init and original_init is None and not overwrite_parent_init:
    safe_init = _safe_inherited_init(cls)
    inherited_init = cls.__init__  # type: ignore[misc]
    if inherited_init is not safe_init:
      raise PyTreeDataclassSafetyError(
          f"@pytree_dataclass decorator for {cls.__name__} is about to"
          f" overwrite an inherited custom __init__ {inherited_init} which"
          " wasn't generated by @pytree_dataclass, but `overwrite_parent_init`"
          " is not set. If you intended to replace the parent's __init__ with"
          " a dataclass-generated one, pass `overwrite_parent_init=True`. If"
          " you intended to keep using the parent's __init__, pass"
          " `init=False`. Alternatively, define an __init__ method in the"
          " class body."
      )

  info: dict[str, Any] = {
      "has_implicitly_inherited_fields": has_implicitly_inherited_fields,
      "use_mutable_proxy_in_init": use_mutable_proxy_in_init,
      "is_init_proxy": False,
  }
  type.__setattr__(cls, PYTREE_DATACLASS_INFO_ATTR, info)

  if repr == "auto":
    repr = not issubclass(cls, Struct)

  cls = dataclasses.dataclass(  # type: ignore[call-overload]
      init=init,
      repr=repr,
      eq=eq,
      order=order,
      match_args=match_args,
      kw_only=kw_only,
      frozen=True,
  )(cls)
  assert cls is not None

  if init and original_init is None:
    info["generated_init"] = cls.__init__
  else:
    info["generated_init"] = None

  _check_field_annotations(cls, has_implicitly_inherited_fields)

  if not (
      hasattr(cls, "tree_flatten_with_keys") and hasattr(cls, "tree_unflatten")
  ):
    raise AttributeError(
        f"{cls.__name__} must define both `tree_flatten_with_keys` and"
        " `tree_unflatten`, which are required by JAX's"
        " `register_pytree_with_keys_class`. Consider subclassing"
        " `penzai.Struct`, which provides both."
    )

  _register_pytree(cls)
  cls.__signature__ = _ConstructorSignature(cls.__init__)  # type: ignore[attr-defined]

  if use_mutable_proxy_in_init and original_init is not None:
    _install_mutable_init_proxy(cls, original_init)

  return cls


class AbstractStructMetaclass(abc.ABCMeta):
  """Metaclass that forbids instantiating Struct classes that weren't decorated."""

  if not typing.TYPE_CHECKING:

    def __call__(cls, *args, **kwargs):
      if not is_pytree_dataclass_type(cls):
        raise TypeError(
            f"Can't instantiate abstract Struct subclass {cls}. Non-abstract"
            " subclasses of penzai.Struct must be decorated with"
            " @penzai.pytree_dataclass before they can be instantiated."
        )
      return super().__call__(*args, **kwargs)


def is_pytree_node_field(field: dataclasses.Field[Any]) -> bool:
  """Whether a dataclass field is a pytree child (vs. static metadata)."""
  return field.metadata.get("pytree_node", True)


@dataclasses.dataclass(frozen=True)
class StructStaticMetadata:
  """Auxiliary (static) data of a flattened Struct.

  Attributes:
    child_field_names: Names of the fields that are pytree children.
    static_fields: Values of the static (non-child) fields, by name.
  """

  child_field_names: list[str]
  static_fields: dict[str, Any]


def _build_unchecked(cls: type[T], field_values: dict[str, Any]) -> T:
  """Creates an instance of `cls` with the given fields, skipping `__init__`."""
  value = object.__new__(cls)
  for name, field_value in field_values.items():
    object.__setattr__(value, name, field_value)
  return value


def _make_static_metadata(
    child_names: tuple[str, ...], static_fields: dict[str, Any]
) -> StructStaticMetadata:
  """Fast equivalent of `StructStaticMetadata(list(child_names), static_fields)`.

  Skips the frozen dataclass `__init__` (which sets each attribute through
  `object.__setattr__`), since this runs for every Struct on every flatten.
  """
  metadata = object.__new__(StructStaticMetadata)
  attributes = metadata.__dict__
  attributes["child_field_names"] = list(child_names)
  attributes["static_fields"] = static_fields
  return metadata


class Struct(metaclass=AbstractStructMetaclass):
  """Base class for penzai's immutable pytree dataclasses.

  Subclasses must be decorated with `@pytree_dataclass` to be instantiable.
  Non-static fields are pytree children (keyed by `key_for_field`), so Structs
  work with all JAX transformations and with `pz.select`.
  """

  @typing.final
  @classmethod
  def from_attributes(cls: Type[T], **field_values) -> T:
    """Builds an instance from field values directly, bypassing `__init__`."""
    expected = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    given = set(field_values.keys())
    if expected != given:
      raise ValueError(
          "Incorrect fields provided to `from_attributes`; expected"
          f" {expected}, got {given}"
      )
    return _build_unchecked(cls, field_values)

  @typing.final
  def attributes_dict(self) -> dict[str, Any]:
    """Returns `{field_name: value}` for every dataclass field, in field order."""
    return {
        name: getattr(self, name)
        for name in _field_layout(type(self)).field_names
    }

  @typing.final
  def select(self) -> selectors.Selection[Struct]:
    """Returns a selection containing only this struct (at keypath `()`)."""
    from penzai.core import selectors  # pylint: disable=import-outside-toplevel

    return selectors.select(self)

  def key_for_field(self, field_name: str) -> Hashable:
    """Returns the JAX pytree key used for the child field `field_name`."""
    return jax.tree_util.GetAttrKey(field_name)

  @typing.final
  def tree_flatten_with_keys(self) -> tuple[Sequence[tuple[Any, Any]], Any]:
    """Flattens into `(key, child)` pairs plus `StructStaticMetadata`."""
    cls = type(self)
    layout = _FIELD_LAYOUT_CACHE.get(cls) or _field_layout(cls)
    if cls.key_for_field is Struct.key_for_field:
      keys: Sequence[Any] = layout.default_keys
    else:
      keys = [self.key_for_field(name) for name in layout.child_names]
    children = [
        (key, getattr(self, name))
        for key, name in zip(keys, layout.child_names)
    ]
    static_fields = {name: getattr(self, name) for name in layout.static_names}
    return children, _make_static_metadata(layout.child_names, static_fields)

  @typing.final
  def tree_flatten(self) -> tuple[Sequence[Any], Any]:
    """Flattens into children (without keys) plus `StructStaticMetadata`."""
    cls = type(self)
    layout = _FIELD_LAYOUT_CACHE.get(cls) or _field_layout(cls)
    children = [getattr(self, name) for name in layout.child_names]
    static_fields = {name: getattr(self, name) for name in layout.static_names}
    return children, _make_static_metadata(layout.child_names, static_fields)

  @typing.final
  @classmethod
  def tree_unflatten(cls, aux_data: Any, children: Sequence[Any]) -> Struct:
    """Rebuilds an instance from flattened data without calling `__init__`."""
    value = object.__new__(cls)
    try:
      attributes = value.__dict__
    except AttributeError:  # A class using __slots__.
      field_values = dict(zip(aux_data.child_field_names, children))
      field_values.update(aux_data.static_fields)
      return _build_unchecked(cls, field_values)
    # Equivalent to `object.__setattr__` for each field (fields are plain
    # instance attributes), but much faster on this hot path.
    attributes.update(zip(aux_data.child_field_names, children))
    attributes.update(aux_data.static_fields)
    return value

  def treescope_color(self) -> str | tuple[str, str]:
    """Color used by treescope for this struct (override to customize)."""
    if hasattr(self, "__call__"):
      import treescope  # pylint: disable=import-outside-toplevel

      type_string = f"{type(self).__module__}.{type(self).__qualname__}"
      return treescope.formatting_util.color_from_string(type_string)
    return "transparent"

  def __repr__(self) -> str:
    """Compact (usually one-line) treescope rendering."""
    import treescope  # pylint: disable=import-outside-toplevel

    with treescope.using_expansion_strategy(max_height=1):
      return treescope.render_to_text(self, ignore_exceptions=True)

  def _repr_pretty_(self, p, cycle):
    """IPython pretty-printer hook: the full treescope text rendering."""
    del cycle
    import treescope  # pylint: disable=import-outside-toplevel

    lines = treescope.render_to_text(self, ignore_exceptions=True).split("\n")
    for i, line in enumerate(lines):
      if i:
        p.break_()
      p.text(line)

  def __treescope_repr__(self, path: str | None, subtree_renderer: Any):
    """Treescope hook; renders the struct as a constructor call."""
    try:
      from penzai.core._treescope_handlers import struct_handler  # pylint: disable=import-outside-toplevel
    except ImportError:
      return NotImplemented  # Handlers unavailable: use generic rendering.
    return struct_handler.handle_structs(self, path, subtree_renderer)


# ---------------------------------------------------------------------------
# Fast pytree registration
#
# JAX calls the flatten function of every Struct in the arguments of each
# jitted call, and compares the aux data against the cached signature. Both
# are Python calls per Struct, so they are the fixed per-call overhead of a
# penzai model. To keep it small:
#
# * each class gets its own flatten/unflatten functions, generated for its
#   field names (no method lookup, no per-call layout lookup);
# * Structs are immutable, so the result of flattening an instance,
#   `(children, StructStaticMetadata)`, is computed once and remembered on
#   the instance (children as a tuple, so it cannot be modified); instances
#   rebuilt by `tree_unflatten` remember the children and aux data they were
#   built from. Flattening the same instance again returns the *same* aux
#   object, and JAX compares aux data with an identity shortcut, so a jitted
#   call with an unchanged model skips comparing static metadata.

_FLAT_CACHE_ATTR = "_pz_struct_flattened_"
_KEYED_FLAT_CACHE_ATTR = "_pz_struct_flattened_with_keys_"

# Source of the per-class functions. `{children}` reads the child fields from
# the instance dict, `{unpack}` writes them. Fields are plain instance
# attributes, so they are read from and written to `__dict__` directly;
# anything unusual (a missing attribute, aux data with other field names)
# falls back to the generic code.
_FAST_FUNCTIONS_TEMPLATE = """
def flatten(obj):
  flat = obj.__dict__.get(flat_attr)
  if flat is None:
    flat = new_flat(obj)
  return flat

def new_flat(obj):
  attributes = obj.__dict__
  try:
    children = ({children})
  except KeyError:
    children = tuple([getattr(obj, name) for name in child_names])
  aux = make_static_metadata(
      child_names, {{name: getattr(obj, name) for name in static_names}}
  )
  flat = attributes[flat_attr] = (children, aux)
  return flat

def unflatten(aux_data, children):
  value = new_object(cls)
  attributes = value.__dict__
  if (
      type(aux_data) is metadata_type
      and aux_data.child_field_names == child_name_list
      and len(children) == num_children
  ):
    {unpack}
    attributes.update(aux_data.static_fields)
    attributes[flat_attr] = (tuple(children), aux_data)
  else:
    attributes.update(zip(aux_data.child_field_names, children))
    attributes.update(aux_data.static_fields)
  return value
"""


def _register_pytree(cls: type[Any]) -> None:
  """Registers a pytree dataclass with JAX, with a fast path for Structs."""
  uses_struct_methods = (
      issubclass(cls, Struct)
      and cls.tree_flatten is Struct.tree_flatten
      and cls.tree_flatten_with_keys is Struct.tree_flatten_with_keys
      and getattr(cls.tree_unflatten, "__func__", None)
      is Struct.tree_unflatten.__func__  # type: ignore[attr-defined]
  )
  if not uses_struct_methods or not getattr(cls, "__dictoffset__", 0):
    # Classes with their own (un)flattening, or without an instance `__dict__`
    # (e.g. `__slots__`), use their methods as they are.
    jax.tree_util.register_pytree_with_keys_class(cls)
    return
  jax.tree_util.register_pytree_with_keys(
      cls, *_fast_pytree_functions(cls)
  )


def _fast_pytree_functions(cls: type[Any]) -> tuple[
    Callable[[Any], tuple[Sequence[tuple[Any, Any]], StructStaticMetadata]],
    Callable[[Any, Any], Any],
    Callable[[Any], tuple[Sequence[Any], StructStaticMetadata]],
]:
  """Builds `(flatten_with_keys, unflatten, flatten)` functions for `cls`."""
  layout = _field_layout(cls)
  child_names = layout.child_names
  children = "".join(f"attributes[{name!r}], " for name in child_names)
  if child_names:
    unpack = f"[{children}] = children"
  else:
    unpack = "pass"
  namespace: dict[str, Any] = {
      "cls": cls,
      "flat_attr": _FLAT_CACHE_ATTR,
      "child_names": child_names,
      "static_names": layout.static_names,
      "child_name_list": list(child_names),
      "num_children": len(child_names),
      "metadata_type": StructStaticMetadata,
      "make_static_metadata": _make_static_metadata,
      "new_object": object.__new__,
  }
  exec(  # pylint: disable=exec-used
      _FAST_FUNCTIONS_TEMPLATE.format(children=children, unpack=unpack),
      namespace,
  )
  flatten = namespace["flatten"]
  unflatten = namespace["unflatten"]

  default_keys = layout.default_keys
  uses_default_keys = cls.key_for_field is Struct.key_for_field
  keyed_attr = _KEYED_FLAT_CACHE_ATTR

  def flatten_with_keys(
      obj: Any,
  ) -> tuple[Sequence[tuple[Any, Any]], StructStaticMetadata]:
    if uses_default_keys:
      keyed = obj.__dict__.get(keyed_attr)
      if keyed is None:
        values, aux = flatten(obj)
        keyed = (tuple(zip(default_keys, values)), aux)
        obj.__dict__[keyed_attr] = keyed
      return keyed
    values, aux = flatten(obj)
    keys = [obj.key_for_field(name) for name in child_names]
    return list(zip(keys, values)), aux

  return flatten_with_keys, unflatten, flatten
