"""Tests for penzai.toolshed.jit_wrapper."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from penzai import pz
from penzai.models import simple_mlp
from penzai.toolshed import jit_wrapper

_TRACES: list[str] = []


@pz.pytree_dataclass
class _CountingScale(pz.nn.Layer):
  """Multiplies by a static factor; records each Python-level trace."""

  factor: float = dataclasses.field(metadata={"pytree_node": False})
  count: pz.StateVariable[Any]

  def __call__(self, x: Any, /, **side_inputs: Any) -> Any:
    _TRACES.append(f"trace {self.factor}")
    self.count.value = self.count.value + 1
    return x * self.factor


def _x():
  return pz.nx.wrap(
      jax.random.normal(jax.random.key(1), (2, 3)), "batch", "features"
  )


def test_jitted_mlp_equals_eager():
  model = simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(0), feature_sizes=[3, 4, 3]
  )
  x = _x()
  np.testing.assert_allclose(
      jit_wrapper.Jitted(model)(x).unwrap("batch", "features"),
      model(x).unwrap("batch", "features"),
      rtol=1e-5, atol=1e-6,
  )


def test_state_updates_written_back_and_recompiles_on_new_structure():
  _TRACES.clear()
  counter = pz.StateVariable(jnp.asarray(0), label="count")
  body = pz.nn.Sequential([
      _CountingScale(factor=2.0, count=counter),
      pz.nn.StochasticDropout(drop_rate=0.5),
  ])
  jitted = jit_wrapper.Jitted(body)
  eager_counter = pz.StateVariable(jnp.asarray(0), label="count")
  eager = pz.nn.Sequential([
      _CountingScale(factor=2.0, count=eager_counter),
      pz.nn.StochasticDropout(drop_rate=0.5),
  ])
  stream = pz.RandomStream.from_base_key(jax.random.key(4))
  eager_stream = pz.RandomStream.from_base_key(jax.random.key(4))
  x = _x()
  for _ in range(3):
    np.testing.assert_allclose(
        jitted(x, random_stream=stream).unwrap("batch", "features"),
        eager(x, random_stream=eager_stream).unwrap("batch", "features"),
        rtol=1e-6,
    )
  assert int(counter.value) == int(eager_counter.value) == 3
  assert int(stream.offset.value) == int(eager_stream.offset.value) == 3
  # 3 jitted calls trace once; the 3 eager calls trace 3 times.
  assert _TRACES.count("trace 2.0") == 4
  other = jit_wrapper.Jitted(
      pz.nn.Sequential([_CountingScale(factor=3.0, count=counter)])
  )
  np.testing.assert_allclose(
      other(x).unwrap("batch", "features"),
      3.0 * x.unwrap("batch", "features"),
      rtol=1e-6,
  )
  assert "trace 3.0" in _TRACES
  assert int(counter.value) == 4
