"""Registries of the spec language: layer node types, activation functions, initializers, dtypes.

YAML can only name things registered here. Built-in entries are added by
`penzai.dsl.nodes` (layer types) and below (activations, initializers, dtypes);
users add layer types with `register_layer` and activations with
`register_activation`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
  from penzai.dsl.nodes import LayerNode


@dataclasses.dataclass(frozen=True)
class LayerType:
  """A registered node type.

  Attributes:
    name: the `type:` value in documents.
    spec_cls: the Pydantic model validating the node.
    builder: internal builder `(spec, name, init_base_rng, ctx) -> layer`.
    shape_rule: internal rule `(spec, input, ctx) -> output` (see `check.py`).
    labels: `(spec, name) -> list of parameter labels` (None: claims the
      whole `name` prefix).
    variant_field: for types split over several spec classes (like
      `Transformer`), the field that selects the class.
    user: True for user-registered types.
  """

  name: str
  spec_cls: type[Any]
  builder: Callable[..., Any] | None
  shape_rule: Callable[..., Any] | None
  labels: Callable[[Any, str], list[str]] | None = None
  user: bool = False


_LAYER_TYPES: dict[str, LayerType] = {}
_VARIANTS: dict[str, tuple[str, dict[str, type[Any]]]] = {}
_ACTIVATIONS: dict[str, Callable[[], Callable[[Any], Any]]] = {}
_INITIALIZERS: dict[str, Callable[[], Any]] = {}
_DTYPES = (
    "float32", "bfloat16", "float16", "float64",
    "int8", "int16", "int32", "int64", "uint8", "uint32", "bool",
)
_listeners: list[Callable[[], None]] = []


def layer_types() -> dict[str, LayerType]:
  """All registered layer types by name (do not mutate)."""
  return _LAYER_TYPES


def variants() -> dict[str, tuple[str, dict[str, type[Any]]]]:
  """Types dispatched on a second field: name -> (field, {value: spec class})."""
  return _VARIANTS


def add_layer_type(entry: LayerType, replace: bool = False) -> None:
  """Adds a layer type (internal; users call `register_layer`)."""
  if entry.name in _LAYER_TYPES and not replace:
    raise ValueError(f"layer type {entry.name!r} is already registered")
  _LAYER_TYPES[entry.name] = entry
  for listener in _listeners:
    listener()


def add_variant(type_name: str, field: str, choices: dict[str, type[Any]]) -> None:
  """Declares that `type_name` picks its spec class by the value of `field`."""
  _VARIANTS[type_name] = (field, dict(choices))


def on_change(listener: Callable[[], None]) -> None:
  """Calls `listener` whenever the set of layer types changes."""
  _listeners.append(listener)


def register_layer(
    type_name: str,
    spec_cls: type["LayerNode"],
    builder: Callable[[Any, str, Any], Any],
    shape_rule: Callable[[Any, Any, dict[str, Any]], Any],
    labels: Callable[[Any, str], list[str]] | None = None,
    replace: bool = False,
) -> None:
  """Registers a user layer type so that documents may use `type: <type_name>`.

  Args:
    type_name: the `type:` value; must equal the default of `spec_cls.type`.
    spec_cls: a subclass of `dsl.LayerNode` with `type: Literal[type_name]`.
    builder: `builder(spec, name, init_base_rng) -> layer` (a `pz.nn` layer;
      parameters should be labelled under `name`).
    shape_rule: `rule(spec, input_shape, side_inputs) -> output_shape` where
      shapes are `dsl.TensorShape`s; raise `dsl.ShapeError` on a mismatch.
    labels: optional `labels(spec, name) -> list[str]` of parameter labels the
      builder creates (for duplicate-label detection); default: the builder
      owns every label starting with `name`.
    replace: allow replacing an existing registration.
  """
  from penzai.dsl import nodes

  if type_name in _LAYER_TYPES and not _LAYER_TYPES[type_name].user and not replace:
    raise ValueError(f"{type_name!r} is a built-in layer type")
  if not (isinstance(spec_cls, type) and issubclass(spec_cls, nodes.LayerNode)):
    raise TypeError(f"spec_cls for {type_name!r} must subclass dsl.LayerNode, got {spec_cls!r}")
  type_field = spec_cls.model_fields.get("type")
  if type_field is None or type_field.default != type_name:
    raise ValueError(
        f"spec class {spec_cls.__name__} must declare `type: Literal[{type_name!r}] = {type_name!r}`"
    )

  def build(spec: Any, name: str, init_base_rng: Any, ctx: Any) -> Any:
    return builder(spec, name, init_base_rng)

  def rule(spec: Any, value: Any, ctx: Any, path: Any, name: str) -> Any:
    return ctx.user_rule(shape_rule, spec, value)

  add_layer_type(
      LayerType(type_name, spec_cls, build, rule, labels, user=True), replace=replace
  )


def unregister_layer(type_name: str) -> None:
  """Removes a user-registered layer type."""
  entry = _LAYER_TYPES.get(type_name)
  if entry is None or not entry.user:
    raise ValueError(f"{type_name!r} is not a user-registered layer type")
  del _LAYER_TYPES[type_name]
  for listener in _listeners:
    listener()


def register_activation(name: str, fn: Callable[[Any], Any], replace: bool = False) -> None:
  """Adds an activation function usable as `Elementwise.fn` / `MLP.activation_fn`."""
  if name in _ACTIVATIONS and not replace:
    raise ValueError(f"activation {name!r} is already registered")
  _ACTIVATIONS[name] = lambda: fn


def builtin_activation_names() -> list[str]:
  """Names of the activation functions that ship with penzai.dsl."""
  return list(_BUILTIN_ACTIVATIONS)


def activation_names() -> list[str]:
  """Names of the registered activation functions."""
  return list(_ACTIVATIONS)


@functools.cache
def _cached_activation(name: str) -> Callable[[Any], Any]:
  return _ACTIVATIONS[name]()


def activation(name: str) -> Callable[[Any], Any]:
  """The activation function registered as `name` (the same object every call)."""
  return _cached_activation(name)


def activation_name_of(fn: Any) -> str | None:
  """The registered name of an activation function object, if any."""
  for name in _ACTIVATIONS:
    try:
      candidate = activation(name)
    except Exception:  # noqa: BLE001 - a broken user registration must not break lookups
      continue
    if candidate is fn or candidate == fn:
      return name
  return None


def initializer_names() -> list[str]:
  """Names of the registered weight initializers."""
  return list(_INITIALIZERS)


@functools.cache
def initializer(name: str) -> Any:
  """The initializer registered as `name`."""
  return _INITIALIZERS[name]()


def dtype_names() -> tuple[str, ...]:
  """The dtype names accepted in specs."""
  return _DTYPES


def _jax_nn(attr: str) -> Callable[[], Callable[[Any], Any]]:
  def get() -> Callable[[Any], Any]:
    import jax

    return getattr(jax.nn, attr)

  return get


def _gelu(approximate: bool) -> Callable[[], Callable[[Any], Any]]:
  def get() -> Callable[[Any], Any]:
    import jax

    return functools.partial(jax.nn.gelu, approximate=approximate)

  return get


def _identity() -> Callable[[Any], Any]:
  return _identity_fn


def _identity_fn(x: Any) -> Any:
  """Returns its argument unchanged."""
  return x


def _tanh() -> Callable[[Any], Any]:
  import jax.numpy as jnp

  return jnp.tanh


for _name in ("relu", "silu", "sigmoid", "softplus", "elu", "selu", "gelu", "swish", "log_sigmoid", "relu6",
              "mish", "leaky_relu", "celu", "hard_tanh"):
  _ACTIVATIONS[_name] = _jax_nn(_name)
_ACTIVATIONS["soft_sign"] = _jax_nn("soft_sign")
_ACTIVATIONS["softsign"] = _ACTIVATIONS["soft_sign"]
_ACTIVATIONS["gelu_exact"] = _gelu(False)
_ACTIVATIONS["gelu_approx"] = _gelu(True)
_ACTIVATIONS["tanh"] = _tanh
_ACTIVATIONS["identity"] = _identity
_BUILTIN_ACTIVATIONS = tuple(_ACTIVATIONS)


def _lin(attr: str) -> Callable[[], Any]:
  def get() -> Any:
    from penzai.nn import linear_and_affine

    return getattr(linear_and_affine, attr)

  return get


def _const(value: float) -> Callable[[], Any]:
  def get() -> Any:
    from penzai.nn import linear_and_affine

    return linear_and_affine.constant_initializer(value)

  return get


def _varscale(mode: Any, distribution: Any) -> Callable[[], Any]:
  def get() -> Any:
    from penzai.nn import linear_and_affine

    return functools.partial(
        linear_and_affine.variance_scaling_initializer, scale=1.0, mode=mode, distribution=distribution
    )

  return get


_INITIALIZERS.update(
    xavier_uniform=_lin("xavier_uniform_initializer"),
    xavier_normal=_lin("xavier_normal_initializer"),
    zeros=_lin("zero_initializer"),
    ones=_const(1.0),
    lecun_normal=_varscale("fan_in", "truncated_normal"),
    fan_in_normal=_varscale("fan_in", "normal"),
    fan_out_normal=_varscale("fan_out", "normal"),
)
# The pz.nn names of the same initializers (and "zero") are accepted too.
_INITIALIZERS.update(
    zero=_INITIALIZERS["zeros"],
    zero_initializer=_INITIALIZERS["zeros"],
    xavier_uniform_initializer=_INITIALIZERS["xavier_uniform"],
    xavier_normal_initializer=_INITIALIZERS["xavier_normal"],
)
