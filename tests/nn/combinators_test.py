"""Tests for penzai.nn.combinators (through pz.nn)."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz


@pz.pytree_dataclass
class Const(pz.nn.Layer):
  """Returns a fixed value, recording the side inputs it saw."""

  value: Any = dataclasses.field(metadata={"pytree_node": False})
  seen: list[Any] = dataclasses.field(metadata={"pytree_node": False})

  def __call__(self, x, /, **side_inputs):
    self.seen.append(side_inputs)
    return self.value


@pz.pytree_dataclass
class AddN(pz.nn.Layer):
  n: float

  def __call__(self, x, /, **_unused):
    return x + self.n


def test_residual_adds_delta_output_then_input_in_that_order():
  seen = []
  # Lists make `+` order-sensitive: delta output must come first.
  layer = pz.nn.Residual(Const([1], seen))
  assert layer([2], flag=True) == [1, 2]
  assert seen == [{"flag": True}]


def test_residual_numeric():
  layer = pz.nn.Residual(delta=AddN(3.0))
  x = pz.nx.wrap(jnp.arange(3.0), "i")
  np.testing.assert_allclose(layer(x).unwrap("i"), 2 * np.arange(3.0) + 3)


def test_branch_and_add_together():
  seen = []
  layer = pz.nn.BranchAndAddTogether(
      [AddN(1.0), AddN(10.0), Const(jnp.array(100.0), seen)]
  )
  result = layer(jnp.array(2.0), mask="m")
  np.testing.assert_allclose(result, 3.0 + 12.0 + 100.0)
  assert seen == [{"mask": "m"}]


def test_branch_and_multiply_together():
  layer = pz.nn.BranchAndMultiplyTogether(branches=[AddN(1.0), AddN(2.0)])
  x = pz.nx.wrap(jnp.array([1.0, 2.0]), "i")
  np.testing.assert_allclose(layer(x).unwrap("i"), [2.0 * 3.0, 3.0 * 4.0])


@pytest.mark.parametrize(
    "cls", [pz.nn.BranchAndAddTogether, pz.nn.BranchAndMultiplyTogether]
)
def test_empty_branches_raise(cls):
  with pytest.raises(
      ValueError, match=f"^{cls.__name__} requires at least one branch.$"
  ):
    cls([])(jnp.ones(2))


def test_combinator_fields_are_children():
  layer = pz.nn.Residual(AddN(jnp.array(1.0)))
  assert len(pz.select(layer).at_instances_of(AddN).get_sequence()) == 1
  leaves = jax.tree_util.tree_leaves(layer)
  assert len(leaves) == 1
