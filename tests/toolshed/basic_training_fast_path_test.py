"""StatefulTrainer and variable_jit per-call fast paths keep their semantics.

The trainer reuses the previous step's outputs as the frozen values of its
variables, and `variable_jit` writes jitted outputs straight back; these
tests check that outside changes to variables between calls are still seen.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from penzai import pz
from penzai.core import struct
from penzai.models import simple_mlp
from penzai.toolshed import basic_training


def _data() -> tuple[pz.nx.NamedArray, pz.nx.NamedArray]:
  x = jax.random.normal(jax.random.key(0), (4, 2))
  y = x[:, :1] * 2.0 - x[:, 1:]
  return pz.nx.wrap(x, "batch", "features"), pz.nx.wrap(y, "batch", "features")


def _mse(*, model: Any, state: Any, rng: Any, inputs: Any, targets: Any) -> Any:
  del rng
  err = model(inputs) - targets
  loss = (err * err).untag("batch", "features").mean().unwrap()
  return loss, state, loss


def _trainer(model: Any, learning_rate: float = 0.1) -> Any:
  return basic_training.StatefulTrainer.build(
      root_rng=jax.random.key(1), model=model,
      optimizer_def=optax.sgd(learning_rate), loss_fn=_mse,
  )


def _model() -> Any:
  return simple_mlp.MLP.from_config(
      name="m", init_base_rng=jax.random.key(2), feature_sizes=[2, 3, 1]
  )


def test_value_set_between_steps_is_used_by_the_next_step():
  x, y = _data()
  model = _model()
  trainer = _trainer(model, learning_rate=0.0)  # Steps keep values as is.
  trainer.step(inputs=x, targets=y)
  param = pz.unbind_params(model)[1][0]
  replacement = pz.nx.zeros(dict(param.value.named_shape))
  param.value = replacement
  trainer.step(inputs=x, targets=y)
  np.testing.assert_array_equal(param.value.data_array, 0.0)
  # The same model, trained by a fresh trainer from the same values, agrees.
  twin = _model()
  pz.unbind_params(twin)[1][0].value = replacement
  expected = _trainer(twin, learning_rate=0.0).step(inputs=x, targets=y)
  np.testing.assert_allclose(trainer.step(inputs=x, targets=y), expected)


def test_parameter_marked_untrainable_between_steps_stops_changing():
  x, y = _data()
  model = _model()
  trainer = basic_training.StatefulTrainer.build(
      root_rng=jax.random.key(1), model=model,
      optimizer_def=optax.sgd(0.1), loss_fn=_mse,
  )
  trainer.step(inputs=x, targets=y)
  param = pz.unbind_params(model)[1][0]
  param.metadata["trainable"] = False
  before = param.value.data_array
  # SGD is stateless, so the optimizer state still fits the smaller tuple.
  trainer.step(inputs=x, targets=y)
  np.testing.assert_array_equal(param.value.data_array, before)
  others = pz.unbind_params(model)[1][1:]
  assert all(isinstance(p.value.data_array, jax.Array) for p in others)


def test_repeated_steps_reuse_one_compilation_without_metadata_comparisons(
    monkeypatch: pytest.MonkeyPatch,
):
  x, y = _data()
  model = _model()
  trainer = basic_training.StatefulTrainer.build(
      root_rng=jax.random.key(1), model=model,
      optimizer_def=optax.adam(0.01), loss_fn=_mse,
  )
  trainer.step(inputs=x, targets=y)
  trainer.step(inputs=x, targets=y)
  comparisons = []
  original_eq = struct.StructStaticMetadata.__eq__

  def counting_eq(self: Any, other: Any) -> Any:
    comparisons.append(1)
    return original_eq(self, other)

  monkeypatch.setattr(struct.StructStaticMetadata, "__eq__", counting_eq)
  cache_size = trainer.step_fn._cache_size()  # pylint: disable=protected-access
  losses = [float(trainer.step(inputs=x, targets=y)) for _ in range(3)]
  # Only the trainer's own state (rebuilt by its constructor inside the step)
  # is compared with the first call's metadata; parameters and the optimizer
  # state match by identity.
  assert len(comparisons) <= 3
  assert losses[-1] < losses[0]
  assert trainer.step_fn._cache_size() == cache_size  # pylint: disable=protected-access


def test_variable_jit_updates_state_and_sees_outside_changes():
  counter = pz.StateVariable(jnp.array(0), label="counter")

  @pz.variable_jit
  def bump(var: Any, amount: jax.Array) -> jax.Array:
    var.value = var.value + amount
    return var.value

  assert int(bump(counter, 2)) == 2
  assert int(bump(counter, 3)) == 5
  counter.value = 10
  assert int(bump(counter, 1)) == 11
  assert int(counter.value) == 11
  assert isinstance(counter.value, jax.Array)


def test_variable_jit_label_change_between_calls_is_respected():
  param = pz.Parameter(value=jnp.ones(2), label="first")

  @pz.variable_jit
  def double(p: Any) -> jax.Array:
    p.value = p.value * 2
    return p.value

  double(param)
  param.label = "second"
  assert param.get_slot() == pz.ParameterSlot(label="second")
  np.testing.assert_array_equal(double(param), [4.0, 4.0])
  np.testing.assert_array_equal(param.value, [4.0, 4.0])


def test_variable_jit_leaves_unchanged_parameters_in_place_and_updates_others():
  model = _model()
  params = pz.unbind_params(model)[1]
  before = [p.value for p in params]
  x, _ = _data()
  forward = pz.variable_jit(lambda m, v: m(v).unwrap("batch", "features"))
  expected = pz.freeze_params(model)(x).unwrap("batch", "features")
  np.testing.assert_allclose(forward(model, x), expected, rtol=1e-6)
  np.testing.assert_allclose(forward(model, x), expected, rtol=1e-6)
  assert all(p.value is old for p, old in zip(params, before))

  @pz.variable_jit
  def scale_first(m: Any) -> None:
    first = pz.unbind_params(m)[1][0]
    first.value = first.value * 2.0

  scale_first(model)
  np.testing.assert_allclose(
      params[0].value.data_array, before[0].data_array * 2.0
  )
  assert all(p.value is old for p, old in zip(params[1:], before[1:]))


def test_freeze_reuses_the_frozen_value_only_while_the_variable_is_unchanged():
  param = pz.Parameter(value=jnp.ones(2), label="p", metadata={"a": 1})
  first = param.freeze()
  assert param.freeze() is first
  assert first == pz.ParameterValue(
      value=param.value, label="p", metadata={"a": 1}
  )
  assert first.metadata is param.metadata
  param.value = jnp.zeros(2)
  second = param.freeze()
  assert second is not first
  np.testing.assert_array_equal(second.value, [0.0, 0.0])
  param.label = "q"
  assert param.freeze().label == "q"
  param.metadata = {"b": 2}
  assert param.freeze().metadata == {"b": 2}
  state = pz.StateVariable(jnp.zeros(()), label="s")
  frozen_state = state.freeze()
  assert state.freeze() is frozen_state
  assert isinstance(frozen_state, pz.StateVariableValue)
