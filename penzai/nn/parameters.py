"""Parameter helpers for layers: the parameter protocol, key derivation, creation.

Layers store their weights as "parameter-like" objects (a mutable
`pz.Parameter`, a frozen `pz.ParameterValue`, or an unbound `pz.ParameterSlot`)
and build them with `make_parameter`, which derives a deterministic PRNG key
from the parameter's name so that initialization does not depend on the order
in which layers are built.
"""

from __future__ import annotations

import abc
import hashlib
from typing import Any, Callable, Generic, Protocol, TypeVar

import jax

from penzai.core import variables

T = TypeVar("T")


class ParameterLike(Protocol, Generic[T]):  # type: ignore[misc]
  """Protocol for anything with a read-only `.value` (a parameter or its snapshot).

  Layers annotate their parameter fields with `ParameterLike[NamedArray]` so
  that a `Parameter` may be swapped for a frozen `ParameterValue` or an unbound
  `ParameterSlot` without changing the layer.
  """

  @property
  @abc.abstractmethod
  def value(self) -> T:
    """The current value of the parameter."""


def derive_param_key(base_rng: jax.Array, name: str) -> jax.Array:
  """Derives a PRNG key for a parameter from a base key and the parameter name.

  The first four bytes of the SHA-1 digest of the name (big-endian) are folded
  into `base_rng`, so each name gets its own reproducible key.

  Args:
    base_rng: The base PRNG key shared by all parameters of a model.
    name: The parameter's label.

  Returns:
    A PRNG key specific to `name`.
  """
  digest = hashlib.sha1(name.encode("utf-8")).digest()
  offset = int.from_bytes(digest[:4], byteorder="big", signed=False)
  return jax.random.fold_in(base_rng, offset)


def make_parameter(
    name: str,
    init_base_rng: jax.Array | None,
    initializer: Callable[..., T],
    *init_args: Any,
    metadata: dict[Any, Any] | None = None,
    **init_kwargs: Any,
) -> variables.Parameter[T] | variables.ParameterSlot:
  """Makes a parameter labeled `name`, or a slot for it if there is no key.

  Args:
    name: Label of the new parameter (by convention `f"{layer_name}.{field}"`).
    init_base_rng: Base PRNG key; the parameter's own key comes from
      `derive_param_key(init_base_rng, name)`. If None, no value is built and a
      `pz.ParameterSlot(name)` is returned instead (to be bound later).
    initializer: Called as `initializer(key, *init_args, **init_kwargs)` to
      produce the initial value.
    *init_args: Extra positional arguments for `initializer`.
    metadata: Metadata dict stored on the parameter (a new empty dict if None).
    **init_kwargs: Extra keyword arguments for `initializer`.

  Returns:
    A new `pz.Parameter`, or a `pz.ParameterSlot` if `init_base_rng` is None.
  """
  if init_base_rng is None:
    return variables.ParameterSlot(name)
  value = initializer(
      derive_param_key(init_base_rng, name), *init_args, **init_kwargs
  )
  return variables.Parameter(
      value=value,
      label=name,
      metadata=metadata or {},
  )


def assert_no_parameter_slots(model: Any) -> None:
  """Checks that `model` contains no unbound `pz.ParameterSlot`.

  Other slot kinds (e.g. `StateVariableSlot`) are allowed.

  Raises:
    ValueError: If any `ParameterSlot` is present; the message lists them.
  """
  slots = [
      leaf
      for leaf in jax.tree_util.tree_leaves(
          model, is_leaf=lambda x: isinstance(x, variables.ParameterSlot)
      )
      if isinstance(leaf, variables.ParameterSlot)
  ]
  if slots:
    raise ValueError(
        f"Unexpected ParameterSlots found in model: {slots}\nBind values for"
        " these parameters with `pz.bind_variables` (or build the model with"
        " an `init_base_rng`) before using it."
    )
