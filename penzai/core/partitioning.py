"""Partitioning trees into disjoint parts (see `Selection.partition`) and back."""

from __future__ import annotations

from typing import Any

import jax

from penzai.core import struct
from penzai.core import tree_util


@struct.pytree_dataclass
class NotInThisPartition(struct.Struct):
  """Sentinel marking a subtree that was moved to a different partition.

  It has no pytree children, so it disappears from `jax.tree_util.tree_leaves`
  and lets each partition be transformed independently.
  """

  def treescope_color(self) -> str:
    return "orange"


def _combine_pair(a: Any, b: Any, keypath: tuple[Any, ...]) -> Any:
  """Merges two partitions of the same tree (see `combine`)."""
  if isinstance(a, NotInThisPartition):
    return b
  if isinstance(b, NotInThisPartition):
    return a
  flat_a = tree_util.tree_flatten_exactly_one_level(a)
  flat_b = tree_util.tree_flatten_exactly_one_level(b)
  if flat_a is not None and flat_b is not None and flat_a[1] == flat_b[1]:
    keys_and_children_a, treedef = flat_a
    keys_and_children_b, _ = flat_b
    merged = [
        _combine_pair(child_a, child_b, keypath + (key,))
        for (key, child_a), (_, child_b) in zip(
            keys_and_children_a, keys_and_children_b
        )
    ]
    return treedef.unflatten(merged)
  raise ValueError(
      "Expected the nodes at path"
      f" {jax.tree_util.keystr(keypath)} to have compatible structures, or for"
      f" one of them to be NotInThisPartition. However, got {a} and {b}, which"
      " are incompatible."
  )


def combine(*partitions: Any) -> Any:
  """Merges partitions (e.g. from `Selection.partition`) back into one tree.

  Each position must hold a real value in at most one partition; the other
  partitions must hold `NotInThisPartition()` there (possibly replacing a
  whole subtree).

  Args:
    *partitions: Trees with the same structure up to `NotInThisPartition`
      sentinels.

  Returns:
    The combined tree; `NotInThisPartition()` if no partitions were given.

  Raises:
    ValueError: If two partitions both hold values at the same position, or
      their structures differ.
  """
  if not partitions:
    return NotInThisPartition()
  result = partitions[0]
  for partition in partitions[1:]:
    result = _combine_pair(result, partition, ())
  return result
