"""Tests for penzai.core.auto_order_types."""

from __future__ import annotations

import dataclasses

import hypothesis
from hypothesis import strategies as st
import pytest

from penzai import pz


@dataclasses.dataclass(frozen=True)
class LabelA(pz.AutoOrderedAcrossTypes):
  n: int


@dataclasses.dataclass(frozen=True)
class LabelB(pz.AutoOrderedAcrossTypes):
  name: str | None
  ignored: int = dataclasses.field(default=0, compare=False)


def test_instances_sort_after_strings_and_tuples():
  assert sorted([LabelA(2), "b", LabelA(1), "a"]) == ["a", "b", LabelA(1), LabelA(2)]
  assert "zzz" < LabelA(0) and LabelA(0) > "zzz"
  assert not LabelA(0) < "a" and not LabelA(0) <= ("a",)
  assert LabelA(0) >= () and () <= LabelA(0)


def test_different_classes_order_by_qualname():
  assert LabelA(100) < LabelB("a")
  assert LabelB(None) > LabelA(-1)
  assert sorted([LabelB("x"), LabelA(3)]) == [LabelA(3), LabelB("x")]


def test_same_class_orders_by_compared_fields():
  assert LabelB("a", ignored=5) < LabelB("b", ignored=0)
  assert LabelB("a", 1) <= LabelB("a", 2) and LabelB("a", 2) >= LabelB("a", 1)
  with pytest.raises(TypeError):
    _ = LabelB(None) < LabelB("a")


def test_incomparable_with_numbers():
  with pytest.raises(TypeError):
    _ = LabelA(1) < 3
  with pytest.raises(TypeError):
    _ = 3 > LabelA(1)


def test_usable_as_jax_dict_keys_mixed_with_strings():
  import jax  # pylint: disable=import-outside-toplevel

  tree = {LabelA(2): 1, "x": 2, LabelA(1): 3, LabelB("q"): 4}
  leaves = jax.tree_util.tree_leaves(tree)
  assert leaves == [2, 3, 1, 4]


@hypothesis.given(
    st.lists(
        st.one_of(
            st.text(max_size=3),
            st.builds(LabelA, st.integers(-3, 3)),
            st.builds(LabelB, st.text(max_size=2)),
        ),
        max_size=8,
    )
)
def test_sorting_is_consistent(items):
  result = sorted(items)
  for a, b in zip(result, result[1:]):
    assert not b < a
  strings = [x for x in result if isinstance(x, str)]
  assert result[: len(strings)] == strings
