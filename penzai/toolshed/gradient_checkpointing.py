"""Gradient checkpointing (rematerialization) for penzai layers.

`Checkpointed` wraps a layer in `jax.checkpoint` so that its intermediate
values are recomputed during the backward pass instead of stored, while
keeping penzai's Parameters and StateVariables working inside it.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from penzai import pz


def _flat_stateless_call(
    body: pz.nn.Layer,
    state_var_values: tuple[pz.StateVariableValue, ...],
    argument: Any,
    side_inputs: dict[str, Any],
) -> tuple[Any, tuple[Any, ...]]:
  """Calls `body` functionally (a pure function suitable for `jax.checkpoint`)."""
  return body.stateless_call(state_var_values, argument, **side_inputs)


@pz.pytree_dataclass
class Checkpointed(pz.nn.Layer):
  """Runs `body` under `jax.checkpoint`; values and state effects unchanged.

  Usage: `pz.select(model).at_instances_of(pz.nn.Attention).apply(Checkpointed)`.

  Attributes:
    body: The layer to checkpoint.
    policy: Optional `jax.checkpoint` policy deciding which values may be
      saved (e.g. `jax.checkpoint_policies.nothing_saveable`).
  """

  body: pz.nn.Layer
  policy: Callable[..., bool] | None = None

  def __call__(self, argument: Any, /, **side_inputs: Any) -> Any:
    """Calls the body with rematerialization, then writes back its state."""
    frozen_body = pz.freeze_params(self.body)
    (unbound_body, unbound_side_inputs), state_vars = pz.unbind_state_vars(
        (frozen_body, side_inputs)
    )
    result, new_values = jax.checkpoint(
        _flat_stateless_call, policy=self.policy
    )(
        unbound_body,
        tuple(var.freeze() for var in state_vars),
        argument,
        unbound_side_inputs,
    )
    for var, new_value in zip(state_vars, new_values):
      var.update(new_value)
    return result
