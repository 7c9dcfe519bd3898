"""Tests for penzai.toolshed.gradient_checkpointing."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from penzai import pz
from penzai.models import simple_mlp
from penzai.toolshed import gradient_checkpointing


@pz.pytree_dataclass
class _Counter(pz.nn.Layer):
  count: pz.StateVariable[Any]

  def __call__(self, x: Any, /, **side_inputs: Any) -> Any:
    self.count.value = self.count.value + 1
    return x


def _mlp():
  return simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(0), feature_sizes=[3, 5, 2]
  )


def _x():
  return pz.nx.wrap(
      jax.random.normal(jax.random.key(1), (4, 3)), "batch", "features"
  )


def _loss(frozen_params, unbound_model, x):
  model = pz.bind_variables(unbound_model, frozen_params)
  return jnp.sum(model(x).unwrap("batch", "features") ** 2)


def test_same_values_and_gradients_as_plain_layer():
  model = _mlp()
  x = _x()
  checkpointed = (
      pz.select(model)
      .at_instances_of(pz.nn.Affine)
      .apply(gradient_checkpointing.Checkpointed)
  )
  assert (
      pz.select(checkpointed)
      .at_instances_of(gradient_checkpointing.Checkpointed)
      .count()
      == 2
  )
  np.testing.assert_allclose(
      checkpointed(x).unwrap("batch", "features"),
      model(x).unwrap("batch", "features"),
      rtol=1e-6,
  )
  plain_unbound, plain_params = pz.unbind_params(model, freeze=True)
  ck_unbound, ck_params = pz.unbind_params(checkpointed, freeze=True)
  assert [p.label for p in plain_params] == [p.label for p in ck_params]
  grads_plain = jax.grad(_loss)(plain_params, plain_unbound, x)
  grads_ck = jax.grad(_loss)(ck_params, ck_unbound, x)
  for a, b in zip(grads_plain, grads_ck):
    np.testing.assert_allclose(
        np.asarray(a.value.data_array), np.asarray(b.value.data_array),
        rtol=1e-5, atol=1e-6,
    )
  # The backward pass really goes through jax.checkpoint (remat).
  jaxpr = str(jax.make_jaxpr(jax.grad(_loss))(ck_params, ck_unbound, x))
  assert "remat" in jaxpr or "checkpoint" in jaxpr
  plain_jaxpr = str(
      jax.make_jaxpr(jax.grad(_loss))(plain_params, plain_unbound, x)
  )
  assert "remat" not in plain_jaxpr and "checkpoint" not in plain_jaxpr


def test_state_effects_match_direct_call():
  def build(counter):
    return pz.nn.Sequential([
        _Counter(count=counter),
        pz.nn.StochasticDropout(drop_rate=0.5),
    ])

  plain_counter = pz.StateVariable(jnp.asarray(0), label="c")
  ck_counter = pz.StateVariable(jnp.asarray(0), label="c")
  plain = build(plain_counter)
  checkpointed = gradient_checkpointing.Checkpointed(build(ck_counter))
  plain_stream = pz.RandomStream.from_base_key(jax.random.key(7))
  ck_stream = pz.RandomStream.from_base_key(jax.random.key(7))
  x = _x()
  for _ in range(2):
    out_plain = plain(x, random_stream=plain_stream)
    out_ck = checkpointed(x, random_stream=ck_stream)
    np.testing.assert_allclose(
        out_ck.unwrap("batch", "features"),
        out_plain.unwrap("batch", "features"),
    )
  assert int(ck_counter.value) == int(plain_counter.value) == 2
  assert int(ck_stream.offset.value) == int(plain_stream.offset.value) == 2


def test_policy_is_a_child_field_and_is_used():
  policy = jax.checkpoint_policies.nothing_saveable
  layer = gradient_checkpointing.Checkpointed(
      pz.nn.Elementwise(jnp.sin), policy=policy
  )
  assert any(leaf is policy for leaf in jax.tree_util.tree_leaves(layer))
  assert gradient_checkpointing.Checkpointed(pz.nn.Identity()).policy is None
  x = pz.nx.wrap(jnp.array([0.1, 0.2]), "features")

  def f(v):
    return jnp.sum(layer(pz.nx.wrap(v, "features")).unwrap("features"))

  np.testing.assert_allclose(
      jax.grad(f)(x.unwrap("features")), np.cos([0.1, 0.2]), rtol=1e-6
  )
