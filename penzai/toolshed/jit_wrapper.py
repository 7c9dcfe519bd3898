"""A layer combinator that JIT-compiles its body.

`Jitted(body)` behaves like `body` but runs it through `pz.variable_jit`, so
Parameters and StateVariables in the body, argument and side inputs keep
working (state updates are written back after each call).
"""

from __future__ import annotations

from typing import Any

from penzai import pz


@pz.variable_jit
def _flat_jit_call_layer(
    layer: pz.nn.Layer, arg: Any, side_inputs: dict[str, Any]
) -> Any:
  """Calls `layer(arg, **side_inputs)` inside a compiled computation."""
  return layer(arg, **side_inputs)


@pz.pytree_dataclass
class Jitted(pz.nn.Layer):
  """Runs `body` under `pz.variable_jit`; results equal the eager call.

  Calls with a different body structure (or input shapes) recompile.

  Attributes:
    body: The layer to compile.
  """

  body: pz.nn.Layer

  def __call__(self, argument: Any, /, **side_inputs: Any) -> Any:
    """Calls the compiled body with the argument and side inputs."""
    return _flat_jit_call_layer(self.body, argument, side_inputs)
