"""Helpers that compare our public objects against signatures written in the reference.

Expected signatures are written in the reference's notation, e.g.
``"(cls, name: str, init_base_rng: jax.Array | None, dtype = jnp.float32) -> Linear"``,
and parsed with :mod:`ast` (annotations are ignored; they are strings at runtime).
What is compared: parameter names, order, kinds (positional-only ``/``,
keyword-only ``*``, ``*args``, ``**kwargs``) and default values. Default
expressions are evaluated in the namespace of the module that defines the
object, so names like ``xavier_uniform_initializer`` resolve to our objects.

Field lists of dataclasses use the same notation: annotation ``static`` marks a
field with ``pytree_node=False`` metadata, ``= <factory>`` a default factory.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

P = inspect.Parameter
_FACTORY_NAME = "__FACTORY__"
_COMMON_NAMESPACE: dict[str, Any] = {
    "jax": jax,
    "jnp": jnp,
    "np": np,
    "functools": functools,
    "Ellipsis": Ellipsis,
    "penzai": importlib.import_module("penzai"),
}


@dataclasses.dataclass(frozen=True)
class ExpectedParam:
  """One parameter of an expected signature (default given as source text)."""

  name: str
  kind: inspect._ParameterKind
  default_src: str | None
  annotation_src: str | None


def parse_signature(sig: str) -> list[ExpectedParam]:
  """Parses ``"(a, /, b=1, *, c, **kw) -> ret"`` into expected parameters."""
  src = sig.strip().replace("<factory>", _FACTORY_NAME)
  fn = ast.parse(f"def _f{src}: pass").body[0]
  assert isinstance(fn, ast.FunctionDef)
  a = fn.args
  params: list[ExpectedParam] = []
  positional = [(x, P.POSITIONAL_ONLY) for x in a.posonlyargs] + [
      (x, P.POSITIONAL_OR_KEYWORD) for x in a.args
  ]
  first_default = len(positional) - len(a.defaults)
  for i, (arg, kind) in enumerate(positional):
    default = (
        ast.unparse(a.defaults[i - first_default]) if i >= first_default else None
    )
    params.append(ExpectedParam(arg.arg, kind, default, _ann(arg)))
  if a.vararg is not None:
    params.append(ExpectedParam(a.vararg.arg, P.VAR_POSITIONAL, None, None))
  for arg, d in zip(a.kwonlyargs, a.kw_defaults):
    params.append(
        ExpectedParam(
            arg.arg, P.KEYWORD_ONLY, None if d is None else ast.unparse(d), _ann(arg)
        )
    )
  if a.kwarg is not None:
    params.append(ExpectedParam(a.kwarg.arg, P.VAR_KEYWORD, None, None))
  return params


def _ann(arg: ast.arg) -> str | None:
  return None if arg.annotation is None else ast.unparse(arg.annotation)


def resolve(target: str) -> Any:
  """Resolves ``"pkg.module:Name.attr"`` to the object (attributes via getattr)."""
  module_name, _, attr_path = target.partition(":")
  obj: Any = importlib.import_module(module_name)
  for part in attr_path.split(".") if attr_path else []:
    obj = getattr(obj, part)
  return obj


def module_namespace(target: str) -> dict[str, Any]:
  """Namespace used to evaluate default expressions for `target`."""
  module = importlib.import_module(target.partition(":")[0])
  return {**_COMMON_NAMESPACE, **vars(module)}


def static_member(target: str) -> tuple[type, Any]:
  """Returns ``(owner_class, raw descriptor)`` for ``"module:Class.member"``."""
  owner_path, _, member = target.rpartition(".")
  owner = resolve(owner_path)
  assert isinstance(owner, type), f"{owner_path} is not a class"
  return owner, inspect.getattr_static(owner, member)


def _is_dtype_like(x: Any) -> bool:
  if isinstance(x, np.dtype):
    return True
  if isinstance(x, type) and issubclass(x, np.generic):
    return True
  return hasattr(x, "dtype") and isinstance(x, type)


def defaults_equal(expected: Any, actual: Any) -> bool:
  """Equality of default values, strict about types of Python scalars."""
  if expected is actual:
    return True
  if isinstance(expected, functools.partial):
    return (
        isinstance(actual, functools.partial)
        and expected.func is actual.func
        and expected.args == actual.args
        and expected.keywords == actual.keywords
    )
  if _is_dtype_like(expected) and _is_dtype_like(actual):
    try:
      return bool(np.dtype(expected) == np.dtype(actual))
    except TypeError:
      return False
  if type(expected) is not type(actual):
    return False
  try:
    return bool(expected == actual)
  except Exception:  # pylint: disable=broad-except
    return False


def compare_parameters(
    actual: inspect.Signature,
    expected_sig: str,
    namespace: dict[str, Any],
    *,
    ignore_positional_names: bool = False,
) -> list[str]:
  """Lists every difference between `actual` and the expected signature text."""
  expected = parse_signature(expected_sig)
  got = list(actual.parameters.values())
  problems: list[str] = []
  if len(got) != len(expected):
    problems.append(
        f"parameter count {len(got)} != expected {len(expected)}"
        f" (names {[p.name for p in got]} vs {[e.name for e in expected]})"
    )
  for index, (e, g) in enumerate(zip(expected, got)):
    # For `__call__`, only the receiver and the main input may be renamed.
    positional = index < 2 and e.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
    var = e.kind in (P.VAR_POSITIONAL, P.VAR_KEYWORD)
    names_matter = not var and not (ignore_positional_names and positional)
    if names_matter and g.name != e.name:
      problems.append(f"parameter {e.name!r}: actual name is {g.name!r}")
    kind_ok = g.kind == e.kind
    if (
        ignore_positional_names
        and positional
        and e.kind == P.POSITIONAL_OR_KEYWORD
    ):
      kind_ok = g.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
    if not kind_ok:
      problems.append(
          f"parameter {e.name!r}: kind {g.kind.description} != expected"
          f" {e.kind.description}"
      )
    if e.default_src is None:
      if g.default is not P.empty and not var:
        problems.append(
            f"parameter {e.name!r}: has default {g.default!r}, expected required"
        )
    elif e.default_src == _FACTORY_NAME:
      if repr(g.default) != "<factory>":
        problems.append(
            f"parameter {e.name!r}: default {g.default!r}, expected <factory>"
        )
    else:
      want = eval(e.default_src, dict(namespace))  # pylint: disable=eval-used
      if g.default is P.empty:
        problems.append(
            f"parameter {e.name!r}: required, expected default {e.default_src}"
        )
      elif not defaults_equal(want, g.default):
        problems.append(
            f"parameter {e.name!r}: default {g.default!r} != expected"
            f" {e.default_src} ({want!r})"
        )
  return problems


def callable_problems(target: str, expected_sig: str) -> list[str]:
  """Compares the signature of a function, method or constructor.

  Target forms: ``"mod:func"``, ``"mod:Class"`` (constructor, no ``self``),
  ``"mod:Class.method"`` (raw function incl. ``self``/``cls``; expected
  ``cls`` first means it must be a classmethod). Expected text may start with
  ``"property"``: then the member must be a property.
  """
  namespace = module_namespace(target)
  expected_sig = expected_sig.strip()
  owner_path, _, member = target.partition(":")[2].rpartition(".")
  if expected_sig == "property":
    _, raw = static_member(target)
    if isinstance(raw, property):
      return []
    return [f"expected a property, found {type(raw).__name__}"]
  obj = resolve(target)
  if isinstance(obj, type) or not owner_path:
    sig = inspect.signature(obj)
    return compare_parameters(sig, expected_sig, namespace)
  owner, raw = static_member(target)
  del owner
  params = parse_signature(expected_sig)
  wants_cls = bool(params) and params[0].name == "cls"
  problems = []
  if wants_cls and member != "__call__" and not isinstance(raw, classmethod):
    problems.append(f"expected a classmethod, found {type(raw).__name__}")
  if isinstance(raw, (classmethod, staticmethod)):
    func = raw.__func__
  else:
    func = raw
  if not callable(func):
    return problems + [f"not callable: {type(func).__name__}"]
  sig = inspect.signature(func)
  problems += compare_parameters(
      sig,
      expected_sig,
      namespace,
      ignore_positional_names=member == "__call__",
  )
  return problems


def field_problems(target: str, expected_fields: str) -> list[str]:
  """Compares dataclass fields: names, order, static-ness, defaults, kw_only."""
  cls = resolve(target)
  namespace = module_namespace(target)
  if not dataclasses.is_dataclass(cls):
    return [f"{target} is not a dataclass"]
  fields = dataclasses.fields(cls)
  expected = parse_signature(expected_fields)
  problems = []
  got_names = [f.name for f in fields]
  want_names = [e.name for e in expected]
  if got_names != want_names:
    return [f"fields {got_names} != expected {want_names}"]
  for e, f in zip(expected, fields):
    is_static = not f.metadata.get("pytree_node", True)
    want_static = e.annotation_src == "static"
    if is_static != want_static:
      problems.append(
          f"field {f.name!r}: static={is_static}, expected static={want_static}"
      )
    if (e.kind == P.KEYWORD_ONLY) != bool(f.kw_only):
      problems.append(f"field {f.name!r}: kw_only={f.kw_only}")
    has_factory = f.default_factory is not dataclasses.MISSING
    if e.default_src is None:
      if f.default is not dataclasses.MISSING or has_factory:
        problems.append(f"field {f.name!r}: has a default, expected none")
    elif e.default_src == _FACTORY_NAME:
      if not has_factory:
        problems.append(f"field {f.name!r}: expected a default_factory")
    else:
      want = eval(e.default_src, dict(namespace))  # pylint: disable=eval-used
      if f.default is dataclasses.MISSING:
        problems.append(f"field {f.name!r}: no default, expected {e.default_src}")
      elif not defaults_equal(want, f.default):
        problems.append(
            f"field {f.name!r}: default {f.default!r} != expected {e.default_src}"
        )
  return problems


def check(problems: list[str], what: str, actual: Callable[[], str] | None = None) -> None:
  """Fails with a readable report if `problems` is non-empty."""
  if problems:
    detail = "" if actual is None else f"\n  actual: {actual()}"
    raise AssertionError(f"{what}:\n  " + "\n  ".join(problems) + detail)


def describe(target: str) -> str:
  """The actual signature (or field list) of `target`, for failure messages."""
  try:
    obj = resolve(target)
    if dataclasses.is_dataclass(obj) and isinstance(obj, type):
      return ", ".join(
          f.name + ("!" if not f.metadata.get("pytree_node", True) else "")
          for f in dataclasses.fields(obj)
      ) + f" / init{inspect.signature(obj)}"
    if not isinstance(obj, type) and ":" in target and "." in target.partition(":")[2]:
      _, raw = static_member(target)
      raw = getattr(raw, "__func__", raw)
      return f"{type(raw).__name__} {inspect.signature(raw)}"
    return str(inspect.signature(obj))
  except Exception as exc:  # pylint: disable=broad-except
    return f"<unavailable: {exc!r}>"


@dataclasses.dataclass(frozen=True)
class ClassSpec:
  """Expected facts about one class.

  Attributes:
    target: ``"module:Class"``.
    bases: targets (or objects) the class must subclass.
    fields: expected dataclass fields in reference notation, or None if the
      class is not a dataclass (or its fields are unspecified).
    pytree: expected `is_pytree_dataclass_type` result (None: don't check).
    implicit: expected ``has_implicitly_inherited_fields`` (None: don't check).
    dataclass_params: expected ``__dataclass_params__`` flags, e.g. frozen.
    check_init: also compare the constructor signature with the field list.
  """

  target: str
  bases: tuple[Any, ...] = ()
  fields: str | None = None
  pytree: bool | None = None
  implicit: bool | None = None
  dataclass_params: tuple[tuple[str, bool], ...] = ()
  check_init: bool = True


def class_problems(spec: ClassSpec) -> list[str]:
  """Checks bases, fields, pytree registration and constructor of a class."""
  from penzai.core import struct  # pylint: disable=g-import-not-at-top

  cls = resolve(spec.target)
  if not isinstance(cls, type):
    return [f"{spec.target} is not a class but {type(cls).__name__}"]
  problems = []
  for base in spec.bases:
    base_cls = resolve(base) if isinstance(base, str) else base
    if not issubclass(cls, base_cls):
      problems.append(f"not a subclass of {getattr(base_cls, '__qualname__', base_cls)}")
  if spec.pytree is not None:
    is_pytree = struct.is_pytree_dataclass_type(cls)
    if is_pytree != spec.pytree:
      problems.append(f"is_pytree_dataclass_type={is_pytree}, expected {spec.pytree}")
  if spec.implicit is not None:
    info = cls.__dict__.get(struct.PYTREE_DATACLASS_INFO_ATTR, {})
    implicit = bool(info.get("has_implicitly_inherited_fields", False))
    if implicit != spec.implicit:
      problems.append(
          f"has_implicitly_inherited_fields={implicit}, expected {spec.implicit}"
      )
  if spec.dataclass_params:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None:
      problems.append("not a dataclass")
    else:
      for flag, want in spec.dataclass_params:
        if getattr(params, flag) != want:
          problems.append(f"dataclass {flag}={getattr(params, flag)}, expected {want}")
  if spec.fields is not None:
    problems += field_problems(spec.target, spec.fields)
    if spec.check_init and not problems:
      init_problems = compare_parameters(
          inspect.signature(cls), spec.fields, module_namespace(spec.target)
      )
      problems += [f"constructor: {p}" for p in init_problems]
  return problems


def is_final(target: str) -> bool:
  """Whether the member ``"module:Class.member"`` carries `typing.final`."""
  _, raw = static_member(target)
  return bool(
      getattr(raw, "__final__", False)
      or getattr(getattr(raw, "__func__", None), "__final__", False)
  )
