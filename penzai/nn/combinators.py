"""Combinators that route one input through several layers and merge results."""

from __future__ import annotations

from typing import Any

import jax

from penzai.core import struct
from penzai.nn import layer as layer_base


@struct.pytree_dataclass
class Residual(layer_base.Layer):
  """A residual block: returns `delta(x) + x`.

  Attributes:
    delta: The layer whose output is added to the input.
  """

  delta: layer_base.Layer

  def __call__(self, value: Any, /, **side_inputs: Any) -> Any:
    """Runs `delta` (with all side inputs) and adds the input to its output."""
    with jax.named_scope(type(self).__name__):
      return self.delta(value, **side_inputs) + value


@struct.pytree_dataclass
class BranchAndAddTogether(layer_base.Layer):
  """Runs each branch on the same input and sums the outputs.

  Attributes:
    branches: The branches (at least one), summed in order.
  """

  branches: list[layer_base.Layer]

  def __call__(self, arg: Any, /, **side_inputs: Any) -> Any:
    """Returns `branches[0](arg) + branches[1](arg) + ...`.

    Raises:
      ValueError: If there are no branches.
    """
    if not self.branches:
      raise ValueError("BranchAndAddTogether requires at least one branch.")
    with jax.named_scope(type(self).__name__):
      with jax.named_scope("0"):
        result = self.branches[0](arg, **side_inputs)
      for i, branch in enumerate(self.branches[1:], start=1):
        with jax.named_scope(f"{i}"):
          result += branch(arg, **side_inputs)
      return result


@struct.pytree_dataclass
class BranchAndMultiplyTogether(layer_base.Layer):
  """Runs each branch on the same input and multiplies the outputs.

  Attributes:
    branches: The branches (at least one), multiplied in order.
  """

  branches: list[layer_base.Layer]

  def __call__(self, arg: Any, /, **side_inputs: Any) -> Any:
    """Returns `branches[0](arg) * branches[1](arg) * ...`.

    Raises:
      ValueError: If there are no branches.
    """
    if not self.branches:
      raise ValueError(
          "BranchAndMultiplyTogether requires at least one branch."
      )
    with jax.named_scope(type(self).__name__):
      with jax.named_scope("0"):
        result = self.branches[0](arg, **side_inputs)
      for i, branch in enumerate(self.branches[1:], start=1):
        with jax.named_scope(f"{i}"):
          result *= branch(arg, **side_inputs)
      return result
