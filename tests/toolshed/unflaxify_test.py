"""Tests for penzai.toolshed.unflaxify (needs flax)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nn = pytest.importorskip("flax.linen")

from penzai import pz  # pylint: disable=g-import-not-at-top
from penzai.toolshed import unflaxify  # pylint: disable=g-import-not-at-top


class _Block(nn.Module):
  hidden: int = 4

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Dense(self.hidden)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    return nn.relu(x)


class _Model(nn.Module):
  """Setup-style parent; calls `proj` twice (shared parameters)."""

  def setup(self):
    self.block = _Block()
    self.proj = nn.Dense(3)

  def __call__(self, x, train: bool = False):
    h = self.block(x, train=train)
    return self.proj(jnp.concatenate([h[..., :3], x], -1)[..., :3]) + self.proj(x)


class _Noisy(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dropout(0.5, deterministic=False)(nn.Dense(3)(x))


def _x():
  return jax.random.normal(jax.random.key(0), (5, 3))


def _setup(train: bool = False):
  model = _Model()
  variables = model.init(jax.random.key(1), _x())
  return model, variables


def test_converted_model_matches_flax_and_owns_variables():
  model, variables = _setup()
  x = _x()
  converted = unflaxify.unflaxify_apply(model, variables, x)
  assert isinstance(converted, unflaxify.InterceptedFlaxModuleMethod)
  assert converted.method_name == "__call__"
  assert converted.scope_data is None  # The parent owns no variables.
  assert list(converted.submodule_calls) == [
      (0, "block.__call__"), (1, "proj.__call__"), (2, "proj.__call__")
  ]
  np.testing.assert_allclose(
      converted(unflaxify.ArgsAndKwargs.capture(x)),
      model.apply(variables, x),
      rtol=1e-5, atol=1e-6,
  )
  _, params = pz.unbind_params(converted)
  labels = [p.label for p in params]
  assert sorted(labels) == sorted([
      "block.Dense_0.kernel", "block.Dense_0.bias",
      "block.BatchNorm_0.scale", "block.BatchNorm_0.bias",
      "proj.kernel", "proj.bias",
  ])
  # The module called twice shares one set of variables.
  first = converted.submodule_calls[(1, "proj.__call__")]
  second = converted.submodule_calls[(2, "proj.__call__")]
  assert first.scope_data.parameters["kernel"] is (
      second.scope_data.parameters["kernel"]
  )
  block = converted.submodule_calls[(0, "block.__call__")]
  bn = block.submodule_calls[(1, "BatchNorm_0.__call__")]
  # Not mutable here: batch stats are immutable values.
  assert set(bn.scope_data.immutable_variables["batch_stats"]) == {
      "mean", "var"
  }


def test_patching_a_submodule_call_changes_only_that_part():
  model, variables = _setup()
  x = _x()
  converted = unflaxify.unflaxify_apply(model, variables, x)

  @pz.pytree_dataclass
  class _Zero(pz.nn.Layer):
    def __call__(self, args: Any, /, **side_inputs: Any) -> Any:
      return jnp.zeros((5, 3))

  patched = (
      pz.select(converted)
      .at(lambda m: m.submodule_calls[(2, "proj.__call__")])
      .set(_Zero())
  )
  kernel = variables["params"]["proj"]["kernel"]
  bias = variables["params"]["proj"]["bias"]
  full = np.asarray(model.apply(variables, x))
  second_term = np.asarray(x @ kernel + bias)
  np.testing.assert_allclose(
      patched(unflaxify.ArgsAndKwargs.capture(x)), full - second_term,
      rtol=1e-5, atol=1e-5,
  )


def test_mutable_collections_become_state_variables():
  model, variables = _setup()
  x = _x()
  converted = unflaxify.unflaxify_apply(
      model, variables, x, train=True, mutable=["batch_stats"]
  )
  stateless, state_vals = pz.unbind_state_vars(converted, freeze=True)
  labels = [v.label for v in state_vals]
  assert sorted(labels, key=lambda l: l.name) == [
      unflaxify.FlaxVarLabel(collection="batch_stats", name="block.BatchNorm_0.mean"),
      unflaxify.FlaxVarLabel(collection="batch_stats", name="block.BatchNorm_0.var"),
  ]
  out, new_vals = stateless.stateless_call(
      state_vals, unflaxify.ArgsAndKwargs.capture(x, train=True)
  )
  ref_out, ref_updates = model.apply(
      variables, x, train=True, mutable=["batch_stats"]
  )
  np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
  by_name = {v.label.name: v.value for v in new_vals}
  np.testing.assert_allclose(
      by_name["block.BatchNorm_0.mean"],
      ref_updates["batch_stats"]["block"]["BatchNorm_0"]["mean"],
      rtol=1e-5, atol=1e-6,
  )
  # Calling the stateful model directly updates its StateVariables.
  converted(unflaxify.ArgsAndKwargs.capture(x, train=True))
  _, after = pz.unbind_state_vars(converted, freeze=True)
  by_name_after = {v.label.name: v.value for v in after}
  np.testing.assert_allclose(
      by_name_after["block.BatchNorm_0.var"],
      ref_updates["batch_stats"]["block"]["BatchNorm_0"]["var"],
      rtol=1e-5, atol=1e-6,
  )


def test_rngs_become_random_streams():
  module = _Noisy()
  x = _x()
  variables = module.init(jax.random.key(2), x)
  converted = unflaxify.unflaxify_apply(
      module, variables, x, rngs={"dropout": jax.random.key(3)}
  )
  dropout_call = converted.submodule_calls[(1, "Dropout_0.__call__")]
  assert dropout_call.scope_data.rng_names == frozenset({"dropout"})
  with pytest.raises(TypeError, match="dropout"):
    converted(unflaxify.ArgsAndKwargs.capture(x))
  stream = pz.RandomStream.from_base_key(jax.random.key(4))
  out = converted(
      unflaxify.ArgsAndKwargs.capture(x), random_streams={"dropout": stream}
  )
  assert int(stream.offset.value) == 1
  dense = np.asarray(x @ variables["params"]["Dense_0"]["kernel"]
                     + variables["params"]["Dense_0"]["bias"])
  out = np.asarray(out)
  kept = out != 0
  assert kept.any() and (~kept).any()
  np.testing.assert_allclose(out[kept], 2 * dense[kept], rtol=1e-5)


def test_args_and_kwargs_capture_and_color():
  packed = unflaxify.ArgsAndKwargs.capture(1, 2, a=3)
  assert packed.args == (1, 2) and packed.kwargs == {"a": 3}
  model, variables = _setup()
  converted = unflaxify.unflaxify_apply(model, variables, _x())
  assert converted.treescope_color() == pz.color_from_string("_Model")
  import treescope  # pylint: disable=g-import-not-at-top
  text = treescope.render_to_text(converted)
  assert "InterceptedFlaxModuleMethod" in text and "proj.kernel" in text


class _TwoMethods(nn.Module):

  def setup(self):
    self.dense = nn.Dense(2)

  def encode(self, x):
    return jnp.tanh(self.dense(x))

  def __call__(self, x):
    return self.encode(x) * 2


def test_other_methods_and_self_calls():
  module = _TwoMethods()
  x = _x()
  variables = module.init(jax.random.key(5), x)
  encode = unflaxify.unflaxify_apply(module, variables, x, method="encode")
  assert encode.method_name == "encode"
  np.testing.assert_allclose(
      encode(unflaxify.ArgsAndKwargs.capture(x)),
      module.apply(variables, x, method="encode"),
      rtol=1e-6,
  )
  full = unflaxify.unflaxify_apply(module, variables, x)
  # `self.encode(...)` is a call on the module itself, not a submodule call.
  assert list(full.submodule_calls) == [(0, "dense.__call__")]
  np.testing.assert_allclose(
      full(unflaxify.ArgsAndKwargs.capture(x)), module.apply(variables, x),
      rtol=1e-6,
  )
