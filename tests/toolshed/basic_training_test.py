"""Tests for penzai.toolshed.basic_training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from penzai import pz
from penzai.models import simple_mlp
from penzai.toolshed import basic_training


def _data():
  x = jax.random.normal(jax.random.key(0), (16, 2))
  y = x[:, :1] * 2.0 - x[:, 1:] + 0.5
  return pz.nx.wrap(x, "batch", "features"), pz.nx.wrap(y, "batch", "features")


def mse(*, model, state, rng, inputs, targets):
  del rng
  err = model(inputs) - targets
  loss = (err * err).untag("batch", "features").mean().unwrap()
  return loss, state, {"loss": loss}


def _mlp(seed=0):
  return simple_mlp.MLP.from_config(
      init_base_rng=jax.random.key(seed), feature_sizes=[2, 8, 1]
  )


def test_stateful_trainer_decreases_loss_and_updates_params_in_place():
  model = _mlp()
  params_before = pz.unbind_params(model)[1]
  values_before = [p.value.data_array for p in params_before]
  trainer = basic_training.StatefulTrainer.build(
      root_rng=jax.random.key(1), model=model,
      optimizer_def=optax.adam(0.05), loss_fn=mse,
  )
  assert trainer.model is model
  assert trainer.state.label == "StatefulTrainer.state"
  x, y = _data()
  losses = [float(trainer.step(inputs=x, targets=y)["loss"]) for _ in range(40)]
  assert losses[-1] < 0.3 * losses[0]
  params_after = pz.unbind_params(model)[1]
  assert all(a is b for a, b in zip(params_before, params_after))
  assert not np.allclose(values_before[0], params_after[0].value.data_array)
  assert int(trainer.state.value.step) == 40


def test_jit_and_non_jit_steps_agree_and_rng_is_folded_per_step():
  seen_rngs = []

  def loss_with_rng(*, model, state, rng, inputs, targets):
    loss, state, aux = mse(model=model, state=state, rng=rng, inputs=inputs, targets=targets)
    return loss, state, {**aux, "rng": jax.random.key_data(rng)}

  x, y = _data()
  results = []
  for jit in (True, False):
    model = _mlp()
    trainer = basic_training.StatefulTrainer.build(
        root_rng=jax.random.key(7), model=model, optimizer_def=optax.sgd(0.1),
        loss_fn=loss_with_rng, jit=jit,
    )
    auxes = [trainer.step(inputs=x, targets=y) for _ in range(3)]
    seen_rngs.append([a["rng"] for a in auxes])
    results.append([p.value.data_array for p in pz.unbind_params(model)[1]])
  for a, b in zip(*results):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for step, rng in enumerate(seen_rngs[0]):
    expected = jax.random.key_data(jax.random.fold_in(jax.random.key(7), step))
    np.testing.assert_array_equal(rng, expected)


def test_non_trainable_params_stay_fixed_with_stateful_optimizer():
  model = _mlp()
  model = (
      pz.select(model).at_instances_of(pz.Parameter)
      .where(lambda p: p.label.endswith("bias"))
      .apply(lambda p: pz.Parameter(value=p.value, label=p.label, metadata={"trainable": False}))
  )
  biases = [p for p in pz.unbind_params(model)[1] if p.label.endswith("bias")]
  trainer = basic_training.StatefulTrainer.build(
      root_rng=jax.random.key(0), model=model, optimizer_def=optax.adam(0.1), loss_fn=mse,
  )
  x, y = _data()
  for _ in range(3):
    trainer.step(inputs=x, targets=y)
  for bias in biases:
    assert not np.any(bias.value.data_array)


def test_loss_state_and_model_state_variables_are_threaded():
  calls = pz.StateVariable(jnp.array(0), label="calls")

  @pz.pytree_dataclass
  class CountCalls(pz.nn.Layer):
    counter: pz.StateVariable

    def __call__(self, value, **_):
      self.counter.value = self.counter.value + 1
      return value

  model = pz.nn.Sequential([CountCalls(calls), _mlp()])

  def loss_fn(*, model, state, rng, inputs, targets):
    loss, _, aux = mse(model=model, state=None, rng=rng, inputs=inputs, targets=targets)
    return loss, state + loss, aux

  trainer = basic_training.StatefulTrainer.build(
      root_rng=jax.random.key(0), model=model, optimizer_def=optax.sgd(0.01),
      loss_fn=loss_fn, initial_loss_fn_state=jnp.array(0.0), donate_states=True,
  )
  x, y = _data()
  total = sum(float(trainer.step(inputs=x, targets=y)["loss"]) for _ in range(3))
  assert int(calls.value) == 3
  np.testing.assert_allclose(trainer.state.value.loss_fn_state, total, rtol=1e-5)


def test_step_function_is_pure():
  model = _mlp()
  unbound, params = pz.unbind_params(model, freeze=True)
  opt = optax.sgd(0.1)
  state = basic_training.InternalTrainerState(
      step=0, opt_state=opt.init(params), loss_fn_state=None
  )
  x, y = _data()
  aux, new_params, new_state_vars, new_state = basic_training._stateful_trainer_step(
      root_rng=jax.random.key(0), state=state, stateless_model=unbound,
      trainable_params=params, frozen_params=(), state_vars=(),
      loss_fn=mse, optimizer_def=opt, kwargs={"inputs": x, "targets": y},
  )
  assert new_state_vars == ()
  assert int(new_state.step) == 1
  assert [p.label for p in new_params] == [p.label for p in params]

  def loss_of(ps):
    return mse(model=pz.bind_variables(unbound, ps), state=None, rng=None, inputs=x, targets=y)[0]

  grads = jax.jit(jax.grad(loss_of))(params)
  for p, g, n in zip(params, grads, new_params):
    np.testing.assert_allclose(
        n.value.data_array, p.value.data_array - 0.1 * g.value.data_array, rtol=1e-5, atol=1e-6
    )
  np.testing.assert_allclose(aux["loss"], loss_of(params), rtol=1e-6)
