"""Tests for penzai.core.random_stream.RandomStream."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz


def _key_data(key: jax.Array) -> np.ndarray:
  return np.asarray(jax.random.key_data(key))


def test_from_base_key_builds_stream_at_offset_zero():
  base = jax.random.key(0)
  stream = pz.RandomStream.from_base_key(base)
  assert stream.base_key is base
  assert isinstance(stream.offset, pz.StateVariable)
  assert stream.offset.label == "random_stream_offset"
  assert int(stream.offset.value) == 0
  assert jax.tree_util.tree_leaves(stream) == [base, stream.offset]
  custom = pz.RandomStream.from_base_key(base, offset_label="mine")
  assert custom.offset.label == "mine"


def test_constructor_fields():
  offset = pz.StateVariable(5, label="o")
  stream = pz.RandomStream(jax.random.key(1), offset)
  assert stream.offset is offset
  assert stream == pz.RandomStream(base_key=stream.base_key, offset=offset)


def test_next_key_differs_per_call_and_follows_offsets():
  base = jax.random.key(0)
  stream = pz.RandomStream.from_base_key(base)
  keys = [stream.next_key() for _ in range(3)]
  assert int(stream.offset.value) == 3
  datas = [_key_data(k) for k in keys]
  assert not np.array_equal(datas[0], datas[1])
  assert not np.array_equal(datas[1], datas[2])
  for n, data in enumerate(datas):
    np.testing.assert_array_equal(data, _key_data(jax.random.fold_in(base, n)))


def test_streams_are_reproducible_per_base_key():
  a = pz.RandomStream.from_base_key(jax.random.key(7))
  b = pz.RandomStream.from_base_key(jax.random.key(7))
  c = pz.RandomStream.from_base_key(jax.random.key(8))
  ka, kb, kc = a.next_key(), b.next_key(), c.next_key()
  np.testing.assert_array_equal(_key_data(ka), _key_data(kb))
  assert not np.array_equal(_key_data(ka), _key_data(kc))


def test_works_under_variable_jit():
  def draw(stream, n):
    return jnp.stack([jax.random.uniform(stream.next_key()) for _ in range(n)])

  eager_stream = pz.RandomStream.from_base_key(jax.random.key(3))
  jit_stream = pz.RandomStream.from_base_key(jax.random.key(3))
  jitted = pz.variable_jit(draw, static_argnums=(1,))
  first = jitted(jit_stream, 2)
  second = jitted(jit_stream, 2)
  assert int(jit_stream.offset.value) == 4
  np.testing.assert_allclose(first, draw(eager_stream, 2))
  np.testing.assert_allclose(second, draw(eager_stream, 2))
  assert not np.allclose(first, second)


def test_works_under_jit_by_unbinding_state():
  stream = pz.RandomStream.from_base_key(jax.random.key(3))
  unbound, state = pz.unbind_state_vars(stream, freeze=True)

  @jax.jit
  def draw(state):
    local = pz.bind_variables(unbound, state, unfreeze_as_copy=True)
    key = local.next_key()
    return key, pz.unbind_state_vars(local, freeze=True)[1]

  key, new_state = draw(state)
  np.testing.assert_array_equal(
      _key_data(key), _key_data(jax.random.fold_in(jax.random.key(3), 0))
  )
  assert int(new_state[0].value) == 1


def test_two_default_streams_conflict_when_unbound_together():
  a = pz.RandomStream.from_base_key(jax.random.key(0))
  b = pz.RandomStream.from_base_key(jax.random.key(1))
  with pytest.raises(pz.VariableConflictError):
    pz.unbind_variables([a, b])
  c = pz.RandomStream.from_base_key(jax.random.key(1), offset_label="other")
  _, found = pz.unbind_variables([a, c])
  assert found == (a.offset, c.offset)
