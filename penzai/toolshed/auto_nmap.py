"""Automatic `nmap` wrapping of whole modules.

`wrap_module(jnp).sum(x)` behaves like `pz.nx.nmap(jnp.sum)(x)`: every
callable looked up through the wrapper is vectorized over named axes, and
submodules are wrapped recursively (`wrap_module(jax).nn.one_hot`).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

from penzai import pz


@dataclasses.dataclass
class AutoNmapModuleWrapper:
  """Wraps a module so that its callables are `nmap`-ed on attribute access.

  Attributes:
    _module: The wrapped module.
  """

  _module: types.ModuleType

  def __getattr__(self, name: str) -> Any:
    """Returns the `nmap`-ed callable (or wrapped submodule) called `name`."""
    if name == "_module":
      # Not yet initialized (e.g. during copying); avoid infinite recursion.
      raise AttributeError(name)
    original = getattr(self._module, name)
    if isinstance(original, types.ModuleType):
      return AutoNmapModuleWrapper(original)
    if callable(original):
      return pz.nx.nmap(original)
    raise AttributeError(
        f"Cannot wrap attribute {name} of {self._module}: it has unrecognized"
        f" type {type(original)} (expected a callable or submodule)"
    )


def wrap_module(module: types.ModuleType) -> AutoNmapModuleWrapper:
  """Returns a wrapper that `nmap`s every callable of `module` on access.

  Usage: `njnp = wrap_module(jnp); njnp.arange(7).tag("pos")`.
  """
  return AutoNmapModuleWrapper(module)
