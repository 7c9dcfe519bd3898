"""A minimal stateful training loop for penzai models, built on optax.

`StatefulTrainer` owns the optimizer state and updates the model's
`Parameter`s (and `StateVariable`s) in place after each step, like a PyTorch
optimizer; internally each step is a pure (jitted) function of frozen values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, Union

import jax
import optax

from penzai.core import struct
from penzai.core import variables

ModelPyTree = Any
AuxOutPyTree = Any
LossStatePyTree = Any
OptimizerStatePyTree = Any
PRNGKeyArray = jax.Array


class LossFunction(Protocol):
  """Loss called by the trainer with keyword arguments only."""

  def __call__(
      self,
      *,
      model: ModelPyTree,
      state: LossStatePyTree,
      rng: PRNGKeyArray,
      **kwargs: Any,
  ) -> tuple[jax.Array, LossStatePyTree, AuxOutPyTree]:
    """Returns `(scalar loss, new loss state, auxiliary outputs)`."""
    ...


# What `build` accepts: a `LossFunction`, or any callable with that calling
# convention (a loss declaring its own keyword arguments, e.g. `inputs=`, is
# not a structural subtype of the `**kwargs` protocol for type checkers).
LossFunctionLike = Union[
    LossFunction,
    Callable[..., tuple[jax.Array, LossStatePyTree, AuxOutPyTree]],
]


@struct.pytree_dataclass
class InternalTrainerState(struct.Struct):
  """Trainer bookkeeping: step counter, optimizer state and loss state."""

  step: int | jax.Array
  opt_state: OptimizerStatePyTree
  loss_fn_state: LossStatePyTree


def _stateful_trainer_step(
    root_rng: PRNGKeyArray,
    state: InternalTrainerState,
    stateless_model: ModelPyTree,
    trainable_params: tuple[variables.ParameterValue, ...],
    frozen_params: tuple[variables.ParameterValue, ...],
    state_vars: tuple[variables.StateVariableValue, ...],
    loss_fn: LossFunctionLike,
    optimizer_def: optax.GradientTransformation,
    kwargs: dict[str, Any],
) -> tuple[
    AuxOutPyTree,
    tuple[variables.ParameterValue, ...],
    tuple[variables.StateVariableValue, ...],
    InternalTrainerState,
]:
  """One pure training step: gradient of the loss, then an optimizer update."""
  step_rng = jax.random.fold_in(root_rng, state.step)

  def compute_loss(
      params: tuple[variables.ParameterValue, ...],
  ) -> tuple[jax.Array, Any]:
    state_copies = [value.unfreeze_as_copy() for value in state_vars]
    model = variables.bind_variables(
        stateless_model, (*state_copies, *params, *frozen_params)
    )
    loss, new_loss_state, aux = loss_fn(
        model=model, state=state.loss_fn_state, rng=step_rng, **kwargs
    )
    new_state_vars = tuple(var.freeze() for var in state_copies)
    return loss, (new_state_vars, new_loss_state, aux)

  grads, (new_state_vars, new_loss_state, aux) = jax.grad(
      compute_loss, has_aux=True
  )(trainable_params)
  updates, new_opt_state = optimizer_def.update(
      grads, state.opt_state, trainable_params
  )
  new_params = optax.apply_updates(trainable_params, updates)
  return (
      aux,
      new_params,
      new_state_vars,
      InternalTrainerState(
          step=state.step + 1,
          opt_state=new_opt_state,
          loss_fn_state=new_loss_state,
      ),
  )


def _is_trainable(param: variables.Parameter) -> bool:
  return bool(param.metadata.get("trainable", True))


@struct.pytree_dataclass
class StatefulTrainer(struct.Struct):
  """Trains a model's `Parameter`s in place with an optax optimizer.

  Attributes:
    root_rng: Base key; step `n` passes `fold_in(root_rng, n)` to the loss.
    model: The model, holding mutable `Parameter`s (updated in place).
    state: Trainer state (step, optimizer state, loss state).
    optimizer_def: The optax gradient transformation.
    loss_fn: The loss function (see `LossFunction`).
    step_fn: The (possibly jitted) pure step function.
  """

  root_rng: PRNGKeyArray
  model: ModelPyTree
  state: variables.StateVariable[InternalTrainerState]
  optimizer_def: optax.GradientTransformation = dataclasses.field(
      metadata={"pytree_node": False}
  )
  loss_fn: LossFunctionLike = dataclasses.field(
      metadata={"pytree_node": False}
  )
  step_fn: Any = dataclasses.field(metadata={"pytree_node": False})

  @classmethod
  def build(
      cls,
      root_rng: PRNGKeyArray,
      model: ModelPyTree,
      optimizer_def: optax.GradientTransformation,
      loss_fn: LossFunctionLike,
      initial_loss_fn_state: LossStatePyTree = None,
      jit: bool = True,
      donate_states: bool = False,
  ) -> StatefulTrainer:
    """Creates a trainer for `model`.

    Args:
      root_rng: Base random key.
      model: Model containing the `Parameter`s to train (kept by reference).
      optimizer_def: optax optimizer.
      loss_fn: Loss function called as `loss_fn(model=, state=, rng=,
        **step_kwargs)`.
      initial_loss_fn_state: Initial state threaded through the loss.
      jit: Whether to jit-compile the step.
      donate_states: Whether to donate parameter/optimizer buffers to the
        jitted step (saves memory; old buffers become invalid).

    Returns:
      A new `StatefulTrainer`.
    """
    _, params = variables.unbind_params(model)
    # The optimizer state covers the parameters that `step` trains. (Upstream
    # used every Parameter, which broke stateful optimizers as soon as one
    # parameter was marked `trainable=False`.)
    trainable_vars = [
        param
        for param in params
        if isinstance(param, variables.Parameter) and _is_trainable(param)
    ]
    trainable = tuple(param.freeze() for param in trainable_vars)
    opt_state = optimizer_def.init(trainable)
    if jit:
      jit_kwargs: dict[str, Any] = {}
      if donate_states:
        jit_kwargs["donate_argnames"] = [
            "state",
            "trainable_params",
            "state_vars",
        ]
      step_fn: Any = jax.jit(
          _stateful_trainer_step,
          static_argnames=["loss_fn", "optimizer_def"],
          **jit_kwargs,
      )
    else:
      step_fn = _stateful_trainer_step
    state = variables.StateVariable(
        InternalTrainerState(
            step=0, opt_state=opt_state, loss_fn_state=initial_loss_fn_state
        ),
        label="StatefulTrainer.state",
    )
    # `freeze()` of an unchanged variable returns the same frozen value, so
    # the first step passes the objects the optimizer state was built from:
    # parameters and optimizer state share their pytree metadata objects and
    # JAX matches the jit cache by identity on every later step.
    return cls(
        root_rng=root_rng,
        model=model,
        state=state,
        optimizer_def=optimizer_def,
        loss_fn=loss_fn,
        step_fn=step_fn,
    )

  def _unbound_model(
      self,
  ) -> tuple[ModelPyTree, tuple[variables.AbstractVariable, ...]]:
    """`pz.unbind_variables(self.model)`, computed once per trainer.

    The model is an immutable tree holding the same variable objects for the
    trainer's whole life, so the slotted model and the variable list never
    change; only the variables' values and metadata do (read every step).
    """
    cached = self.__dict__.get("_unbound_model_cache")
    if cached is None or cached[0] is not self.model:
      stateless_model, all_vars = variables.unbind_variables(self.model)
      cached = (self.model, stateless_model, all_vars)
      object.__setattr__(self, "_unbound_model_cache", cached)
    return cached[1], cached[2]

  def step(self, **kwargs: Any) -> AuxOutPyTree:
    """Runs one training step; keyword arguments go to the loss function.

    Returns:
      The auxiliary outputs of the loss function.
    """
    stateless_model, all_vars = self._unbound_model()
    trainable: list[variables.Parameter] = []
    frozen: list[variables.Parameter] = []
    state_vars: list[variables.StateVariable] = []
    for var in all_vars:
      if isinstance(var, variables.Parameter):
        (trainable if _is_trainable(var) else frozen).append(var)
      elif isinstance(var, variables.StateVariable):
        state_vars.append(var)
      else:
        raise ValueError(f"Unexpected variable type: {var}")
    aux, new_params, new_state_vars, new_state = self.step_fn(
        root_rng=self.root_rng,
        state=self.state.value,
        stateless_model=stateless_model,
        trainable_params=tuple(var.freeze() for var in trainable),
        frozen_params=tuple(var.freeze() for var in frozen),
        state_vars=tuple(var.freeze() for var in state_vars),
        loss_fn=self.loss_fn,
        optimizer_def=self.optimizer_def,
        kwargs=kwargs,
    )
    if self.step_fn is _stateful_trainer_step:
      for var, new_value in zip(trainable, new_params):
        var.update(new_value)
      for var, new_value in zip(state_vars, new_state_vars):
        var.update(new_value)
      self.state.value = new_state
    else:
      # Outputs of the jitted step are already JAX arrays with the variables'
      # own labels, so the per-leaf conversion of the `.value` setter is
      # skipped (it costs as much as the step itself for small models).
      # The outputs also become the variables' frozen values for the next
      # step (`freeze()` returns them while the variables are unchanged).
      for var, new_value in zip(trainable, new_params):
        variables._remember_frozen(var, new_value)  # pylint: disable=protected-access
      for var, new_value in zip(state_vars, new_state_vars):
        variables._remember_frozen(var, new_value)  # pylint: disable=protected-access
      self.state._raw_value = new_state  # pylint: disable=protected-access
    return aux
