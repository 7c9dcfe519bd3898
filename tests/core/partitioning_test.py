"""Tests for penzai.core.partitioning."""

from __future__ import annotations

from typing import Any

import hypothesis
from hypothesis import strategies as st
import jax
import pytest

from penzai import pz


@pz.pytree_dataclass
class Pair(pz.Struct):
  left: Any
  right: Any


def test_sentinel_properties():
  a, b = pz.NotInThisPartition(), pz.NotInThisPartition()
  assert a == b and hash(a) == hash(b)
  assert jax.tree_util.tree_leaves([a, 1, {"x": b}]) == [1]
  assert a.treescope_color() == "orange"
  assert repr(a) == "NotInThisPartition()"


def test_combine_trivial_cases():
  assert pz.combine() == pz.NotInThisPartition()
  tree = {"a": 1}
  assert pz.combine(tree) is tree


def test_combine_merges_disjoint_partitions():
  nip = pz.NotInThisPartition()
  p1 = {"a": 1, "b": [nip, 3], "c": nip}
  p2 = {"a": nip, "b": [2, nip], "c": Pair(nip, 5)}
  p3 = {"a": nip, "b": [nip, nip], "c": Pair(4, nip)}
  assert pz.combine(p1, p2, p3) == {"a": 1, "b": [2, 3], "c": Pair(4, 5)}


def test_positions_empty_everywhere_stay_sentinel():
  nip = pz.NotInThisPartition()
  assert pz.combine([1, nip], [nip, nip]) == [1, nip]


def test_combine_conflict_errors():
  with pytest.raises(ValueError) as info:
    pz.combine({"a": [1]}, {"a": [1]})
  assert str(info.value) == (
      "Expected the nodes at path ['a'][0] to have compatible structures, or"
      " for one of them to be NotInThisPartition. However, got 1 and 1, which"
      " are incompatible."
  )
  with pytest.raises(ValueError, match="^Expected the nodes at path  to have"):
    pz.combine([1], (1,))


trees = st.recursive(
    st.integers(-5, 5) | st.none(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from("abc"), children, max_size=3)
    | st.builds(Pair, children, children),
    max_leaves=12,
)


@hypothesis.given(trees, st.data())
def test_partition_then_combine_roundtrips(tree, data):
  leaves_count = len(jax.tree_util.tree_leaves(tree))
  chosen = data.draw(st.sets(st.integers(0, max(leaves_count - 1, 0))))
  selection = pz.select(tree).at_pytree_leaves().pick_nth_selected(sorted(chosen))
  for at_leaves in (False, True):
    selected_part, rest = selection.partition(at_leaves=at_leaves)
    assert pz.combine(selected_part, rest) == tree
    assert pz.combine(rest, selected_part) == tree
