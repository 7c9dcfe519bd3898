"""Tests for penzai.core.selectors (`pz.select` and `pz.Selection`)."""

from __future__ import annotations

import collections
from typing import Any

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.core import selectors

GetAttrKey = jax.tree_util.GetAttrKey
SequenceKey = jax.tree_util.SequenceKey
DictKey = jax.tree_util.DictKey

SELECTION_ERROR = "An error occurred while building a Selection."


@pz.pytree_dataclass
class Foo(pz.Struct):
  a: Any
  b: Any


@pz.pytree_dataclass
class Leafy(pz.Struct):
  pass


def make_tree() -> dict[str, Any]:
  return {"x": [1, 2, Foo(3, None)], "y": (4, Foo(5, [6]))}


FOO_X = (DictKey("x"), SequenceKey(2))
FOO_Y = (DictKey("y"), SequenceKey(1))


# Basic structure.


def test_select_selects_root():
  tree = make_tree()
  selection = pz.select(tree)
  assert selection == pz.Selection(
      selected_by_path=collections.OrderedDict({(): tree}),
      remainder=selectors.SelectionHole(path=()),
  )
  assert selection.deselect() is tree
  assert selection.get() is tree
  assert len(selection) == 1 and selection.count() == 1 and selection


def test_accessors():
  selection = pz.select(make_tree()).at_instances_of(Foo)
  assert selection.get_keypaths() == (FOO_X, FOO_Y)
  assert selection.get_sequence() == (Foo(3, None), Foo(5, [6]))
  assert selection.get_by_path() is selection.selected_by_path
  assert not selection.is_empty()
  assert selection.assert_count_is(2) is selection
  with pytest.raises(AssertionError):
    selection.assert_count_is(3)
  with pytest.raises(ValueError) as info:
    selection.get()
  assert str(info.value) == (
      "Selection.get() can only be called on selections with one selected"
      " element, but there were 2. Consider using .selected_by_path instead."
  )


def test_empty_selection_is_falsy():
  selection = pz.select([1]).at_instances_of(str)
  assert not selection and selection.is_empty() and selection.count() == 0
  assert selection.deselect() == [1]


def test_remainder_has_holes_and_selection_is_a_pytree():
  selection = pz.select(make_tree()).at_instances_of(Foo)
  assert selection.remainder == {
      "x": [1, 2, selectors.SelectionHole(FOO_X)],
      "y": (4, selectors.SelectionHole(FOO_Y)),
  }
  # Leaves: selected values (in order) then the remainder's leaves.
  assert jax.tree_util.tree_leaves(selection) == [3, 5, 6, 1, 2, 4]
  doubled = jax.tree_util.tree_map(lambda v: v * 2, selection)
  assert doubled.deselect() == {
      "x": [2, 4, Foo(6, None)],
      "y": (8, Foo(10, [12])),
  }


def test_selection_is_generic():
  assert pz.Selection[int] is not None


def test_selection_order_follows_flatten_order():
  tree = {"b": 1, "a": 2, "c": {"z": 3, "y": 4}}
  assert pz.select(tree).at_instances_of(int).get_sequence() == (2, 1, 4, 3)


# Modification.


def test_apply_variants():
  selection = pz.select(make_tree()).at_instances_of(int)
  assert selection.apply(lambda v: -v) == {
      "x": [-1, -2, Foo(-3, None)],
      "y": (-4, Foo(-5, [-6])),
  }
  kept = selection.apply(lambda v: v + 1, keep_selected=True)
  assert isinstance(kept, pz.Selection)
  assert kept.get_sequence() == (2, 3, 4, 5, 6, 7)
  assert kept.remainder is selection.remainder
  paths = []
  selection.apply(lambda k, v: paths.append(k) or v, with_keypath=True)
  assert tuple(paths) == selection.get_keypaths()


def test_apply_errors_propagate_unwrapped():
  def boom(_):
    raise KeyError("boom")

  with pytest.raises(KeyError, match="boom"):
    pz.select([1]).at_instances_of(int).apply(boom)


def test_set_and_set_by_path():
  selection = pz.select(make_tree()).at_instances_of(Foo)
  assert selection.set("S") == {"x": [1, 2, "S"], "y": (4, "S")}
  assert selection.set_by_path({FOO_X: "X", FOO_Y: "Y"}) == {
      "x": [1, 2, "X"],
      "y": (4, "Y"),
  }
  assert selection.set_by_path(len) == {"x": [1, 2, 2], "y": (4, 2)}
  with pytest.raises(KeyError):
    selection.set_by_path({FOO_X: "X"})


def test_set_sequence():
  selection = pz.select([1, 2, 3]).at_instances_of(int)
  assert selection.set_sequence(["a", "b", "c", "ignored"]) == ["a", "b", "c"]
  with pytest.raises(KeyError):
    selection.set_sequence(["a"])


def test_select_and_set_by_path():
  selection = pz.select(make_tree()).at_instances_of(Foo)
  result = selection.select_and_set_by_path({(GetAttrKey("a"),): 0})
  assert result == {"x": [1, 2, Foo(0, None)], "y": (4, Foo(0, [6]))}


def test_apply_with_selected_index():
  selection = pz.select(["a", "b", "c"]).at_instances_of(str)
  assert selection.apply_with_selected_index(lambda i, v: v * (i + 1)) == [
      "a",
      "bb",
      "ccc",
  ]
  kept = selection.apply_with_selected_index(lambda i, v: i, keep_selected=True)
  assert kept.get_sequence() == (0, 1, 2)


# Narrowing.


def test_at_with_accessor():
  tree = make_tree()
  selection = pz.select(tree).at(lambda t: t["x"][2].a)
  assert selection.get_keypaths() == (FOO_X + (GetAttrKey("a"),),)
  assert selection.get() == 3
  assert pz.select(tree).at(lambda t: t).get_keypaths() == ((),)
  assert pz.select(tree).at(lambda t: t["x"][2].b).get() is None
  assert pz.select(tree).at(lambda t: t["y"]).get() == (4, Foo(5, [6]))


def test_at_multiple_keeps_tree_order():
  tree = make_tree()
  selection = pz.select(tree).at(
      lambda t: [t["y"][0], t["x"][0]], multiple=True
  )
  assert selection.get_sequence() == (1, 4)


def test_at_collection_without_multiple_warns():
  with pytest.warns(UserWarning, match="without passing `multiple=True`"):
    selection = pz.select([1, 2, 3]).at(lambda t: (t[0], t[2]))
  assert selection.get_sequence() == (1, 3)


def test_at_distinguishes_equal_leaves_by_identity():
  selection = pz.select([7, 7, 7]).at(lambda t: t[1])
  assert selection.get_keypaths() == ((SequenceKey(1),),)


def test_at_errors():
  with pytest.raises(ValueError) as info:
    pz.select([1, 2]).at(lambda t: 5)
  assert str(info.value) == (
      "accessor_fn returned a value that was not found in the tree! The"
      " return value must be a single PyTree node or leaf from the provided"
      " argument PyTree. Missing: 5"
  )
  with pytest.raises(ValueError) as info:
    pz.select([1, 2]).at(lambda t: [t[0], 5], multiple=True)
  assert str(info.value) == (
      "accessor_fn returned a value that was not found in the tree! The"
      " return value must be a collection of PyTree nodes or leaves  from the"
      " provided argument PyTree. Missing: [5]"
  )
  with pytest.raises(KeyError):
    pz.select({"a": 1}).at(lambda t: t["missing"])


def test_at_pytree_leaves_and_children():
  tree = {"a": [1, None, ()], "b": Foo(2, Leafy())}
  assert pz.select(tree).at_pytree_leaves().get_sequence() == (1, 2)
  children = pz.select(tree).at_children()
  assert children.get_sequence() == ([1, None, ()], Foo(2, Leafy()))
  grandchildren = children.at_children()
  assert grandchildren.get_sequence() == (1, None, (), 2, Leafy())
  assert grandchildren.at_children().count() == 0


def test_where():
  selection = pz.select(list(range(6))).at_instances_of(int)
  assert selection.where(lambda v: v % 2).get_sequence() == (1, 3, 5)
  assert selection.where(
      lambda k, v: k == (SequenceKey(4),), with_keypath=True
  ).get_sequence() == (4,)


def test_at_subtrees_where_outermost_and_keypaths():
  tree = make_tree()
  outer = pz.select(tree).at_subtrees_where(lambda s: isinstance(s, (Foo, list)))
  assert outer.get_keypaths() == ((DictKey("x"),), FOO_Y)
  seen = []
  inner = pz.select(tree).at_instances_of(Foo)
  inner.at_subtrees_where(lambda k, s: seen.append(k) or False, with_keypath=True)
  assert seen[0] == () and (GetAttrKey("a"),) in seen
  seen.clear()
  inner.at_subtrees_where(
      lambda k, s: seen.append(k) or False,
      with_keypath=True,
      absolute_keypath=True,
  )
  assert seen[0] == FOO_X and FOO_X + (GetAttrKey("a"),) in seen


def test_at_subtrees_where_tests_every_node_including_none():
  tested = []
  pz.select([None, 1]).at_subtrees_where(lambda s: tested.append(s) or False)
  assert tested == [[None, 1], None, 1]


def test_at_subtrees_where_requires_bool():
  with pytest.raises(ValueError, match=SELECTION_ERROR) as info:
    pz.select([1]).at_subtrees_where(lambda s: np.bool_(True))
  assert isinstance(info.value.__cause__, TypeError)
  assert str(info.value.__cause__) == (
      "Filter function for at_subtrees_where must return a bool, not <class"
      " 'numpy.bool'>"
  ) or "must return a bool, not" in str(info.value.__cause__)


def test_innermost_mode():
  tree = [Foo([Foo(1, 2)], 3), Foo(4, 5)]
  inner = pz.select(tree).at_instances_of(Foo, innermost=True)
  assert inner.get_sequence() == (Foo(1, 2), Foo(4, 5))
  outer = pz.select(tree).at_instances_of(Foo)
  assert outer.get_sequence() == (Foo([Foo(1, 2)], 3), Foo(4, 5))
  # Quirk: leaves are never tested in innermost mode.
  assert pz.select([1, [2]]).at_instances_of(int, innermost=True).count() == 0
  lists = pz.select([1, [2, []]]).at_instances_of(list, innermost=True)
  assert lists.get_keypaths() == ((SequenceKey(1), SequenceKey(1)),)


def test_at_equal_to():
  tree = [Foo(1, 2), [Foo(1, 2)], jnp.ones(2), 3]
  assert pz.select(tree).at_equal_to(Foo(1, 2)).count() == 2
  assert pz.select(tree).at_equal_to(3).get_keypaths() == ((SequenceKey(3),),)
  for array in (jnp.ones(2), np.ones(2)):
    with pytest.raises(ValueError, match="Cannot use at_equal_to"):
      pz.select(tree).at_equal_to(array)


def test_at_keypaths_outermost_wins():
  tree = make_tree()
  selection = pz.select(tree).at_keypaths(
      [FOO_Y + (GetAttrKey("b"),), FOO_Y, (DictKey("x"), SequenceKey(0))]
  )
  assert selection.get_keypaths() == ((DictKey("x"), SequenceKey(0)), FOO_Y)
  assert pz.select(tree).at_keypaths([()]).get_keypaths() == ((),)
  assert pz.select(tree).at_keypaths([(DictKey("nope"),)]).count() == 0


def test_at_keypaths_are_relative_to_selected_nodes():
  selection = pz.select(make_tree()).at_instances_of(Foo)
  narrowed = selection.at_keypaths([(GetAttrKey("a"),)])
  assert narrowed.get_sequence() == (3, 5)


def test_at_childless():
  tree = {"a": [1, None, ()], "b": Foo({}, Leafy())}
  assert pz.select(tree).at_childless().get_sequence() == (
      1,
      None,
      (),
      {},
      Leafy(),
  )


def test_invert():
  tree = make_tree()
  inverted = pz.select(tree).at_instances_of(Foo).invert()
  assert inverted.get_sequence() == (1, 2, 4)
  none_inverted = pz.select(tree).at_instances_of(int).invert()
  assert none_inverted.get_keypaths() == (FOO_X + (GetAttrKey("b"),),)
  assert pz.select(tree).at_instances_of(str).invert().get_keypaths() == ((),)
  assert pz.select(tree).invert().count() == 0


def test_pick_nth_selected():
  selection = pz.select(list("abcdef")).at_instances_of(str)
  assert selection.pick_nth_selected(1).get_sequence() == ("b",)
  assert selection.pick_nth_selected(-1).get_sequence() == ("f",)
  assert selection.pick_nth_selected([4, 0, -6, 99, -7]).get_sequence() == (
      "a",
      "e",
  )
  with pytest.raises(ValueError, match=SELECTION_ERROR):
    selection.pick_nth_selected(np.int32(1))  # type: ignore[arg-type]


def test_shift_negative_indices():
  assert selectors._shift_negative_indices([1, -1, -5], shift=3) == (1, 2, -2)
  assert selectors._shift_negative_indices(iter((0, -2)), 2) == (0, 0)


def test_refine_and_flatten_selected_selections():
  tree = make_tree()
  refined = pz.select(tree).at_instances_of(Foo).refine(
      lambda f: pz.select(f).at(lambda f: f.a)
  )
  assert refined.get_keypaths() == (
      FOO_X + (GetAttrKey("a"),),
      FOO_Y + (GetAttrKey("a"),),
  )
  assert refined.set(0) == {"x": [1, 2, Foo(0, None)], "y": (4, Foo(0, [6]))}
  with pytest.raises(ValueError, match=SELECTION_ERROR) as info:
    pz.select(tree).at_instances_of(Foo).flatten_selected_selections()
  assert "flatten_selected_selections can only be called" in str(
      info.value.__cause__
  )


# Nested selections and quoting.


def test_selecting_inside_a_selection_quotes_existing_holes():
  tree = make_tree()
  inner = pz.select(tree).at_instances_of(Foo)
  outer = pz.select(inner).at_instances_of(selectors.SelectionHole)
  assert outer.count() == 2
  assert outer.remainder.remainder == {
      "x": [1, 2, selectors.SelectionHole(outer.get_keypaths()[0])],
      "y": (4, selectors.SelectionHole(outer.get_keypaths()[1])),
  }
  ints = pz.select(inner).at_instances_of(int)
  quotes = pz.select(ints.remainder).at_instances_of(selectors.SelectionQuote)
  assert quotes.get_sequence() == (
      selectors.SelectionQuote(selectors.SelectionHole(FOO_X)),
      selectors.SelectionQuote(selectors.SelectionHole(FOO_Y)),
  )
  modified = ints.apply(lambda v: -v)
  assert isinstance(modified, pz.Selection)
  assert modified.deselect() == {
      "x": [-1, -2, Foo(-3, None)],
      "y": (-4, Foo(-5, [-6])),
  }


# List/tuple surgery.


def test_apply_and_inline_and_insertions():
  tree = {"l": [1, 2, 3], "t": (4, 5)}
  evens = pz.select(tree).at_instances_of(int).where(lambda v: v % 2 == 0)
  assert evens.apply_and_inline(lambda v: [v, v]) == {
      "l": [1, 2, 2, 3],
      "t": (4, 4, 5),
  }
  assert evens.remove_from_parent() == {"l": [1, 3], "t": (5,)}
  assert evens.insert_after("n") == {"l": [1, 2, "n", 3], "t": (4, "n", 5)}
  assert evens.insert_before("n") == {"l": [1, "n", 2, 3], "t": ("n", 4, 5)}
  inserted = evens.insert_after("n", and_select=True)
  assert isinstance(inserted, pz.Selection)
  assert inserted.get_keypaths() == (
      (DictKey("l"), SequenceKey(2)),
      (DictKey("t"), SequenceKey(1)),
  )
  assert inserted.deselect() == {"l": [1, 2, "n", 3], "t": (4, "n", 5)}
  before = evens.insert_before("n", and_select=True)
  assert before.get_sequence() == ("n", "n")
  with_keys = evens.apply_and_inline(lambda k, v: [k[-1].idx], with_keypath=True)
  assert with_keys == {"l": [1, 1, 3], "t": (0, 5)}


def test_apply_and_inline_errors():
  with pytest.raises(ValueError) as info:
    pz.select([1]).apply_and_inline(lambda v: [v])
  assert str(info.value) == (
      "apply_and_inline requires all selected nodes to be children of lists"
      " or tuples, but the root node was selected."
  )
  with pytest.raises(ValueError) as info:
    pz.select({"a": 1}).at_instances_of(int).remove_from_parent()
  assert str(info.value) == (
      "apply_and_inline requires all selected nodes to be children of lists"
      " or tuples, but the node at keypath ['a'] was contained in a node of"
      " type dict"
  )


# Partitioning.


def test_partition():
  tree = make_tree()
  nip = pz.NotInThisPartition()
  selected_part, rest = pz.select(tree).at_instances_of(Foo).partition()
  assert selected_part == {
      "x": [nip, nip, Foo(3, None)],
      "y": (nip, Foo(5, [6])),
  }
  assert rest == {"x": [1, 2, nip], "y": (4, nip)}
  assert pz.combine(selected_part, rest) == tree
  selected_leaves, rest_leaves = (
      pz.select(tree).at_instances_of(Foo).partition(at_leaves=True)
  )
  assert selected_leaves["x"][0] == nip
  assert rest_leaves["x"][2] == Foo(nip, None)
  assert pz.combine(selected_leaves, rest_leaves) == tree


# Error wrapping.


@pz.pytree_dataclass
class Picky(pz.Struct):
  """A node whose unflattening rejects non-int children."""

  value: Any

  def __post_init__(self):
    if not isinstance(self.value, int):
      raise TypeError("Picky only accepts ints")


def test_errors_from_unflattening_are_wrapped():
  # Struct unflattening bypasses __init__, so use a registered custom node.
  class Strict:

    def __init__(self, value):
      if not isinstance(value, int):
        raise TypeError("Strict only accepts ints")
      self.value = value

  jax.tree_util.register_pytree_node(
      Strict, lambda s: ((s.value,), None), lambda _, c: Strict(*c)
  )
  with pytest.raises(ValueError, match=SELECTION_ERROR) as info:
    pz.select([Strict(1)]).at_instances_of(int)
  assert isinstance(info.value.__cause__, TypeError)
  assert "Partial" not in str(info.value)


def test_partial_in_tree_adds_explanation():
  def f(x, y):
    return x + y

  tree = [jax.tree_util.Partial(f, 1), 2]
  with pytest.raises(ValueError, match=SELECTION_ERROR) as info:
    pz.select(tree).at_subtrees_where(lambda s: 1)
  assert "jax.tree_util.Partial" in str(info.value)


def test_struct_children_can_be_replaced_by_anything():
  assert pz.select([Picky(1)]).at_instances_of(int).set("s")[0].value == "s"


# Properties.

trees = st.recursive(
    st.integers(-5, 5) | st.none() | st.text(max_size=2),
    lambda children: st.lists(children, max_size=3)
    | st.tuples(children, children)
    | st.dictionaries(st.sampled_from("abc"), children, max_size=3)
    | st.builds(Foo, children, children),
    max_leaves=15,
)


@hypothesis.given(trees)
def test_property_deselect_roundtrips(tree):
  for selection in (
      pz.select(tree),
      pz.select(tree).at_instances_of(int),
      pz.select(tree).at_instances_of(Foo),
      pz.select(tree).at_childless(),
      pz.select(tree).at_instances_of(list, innermost=True),
  ):
    assert selection.deselect() == tree
    assert selection.invert().deselect() == tree


@hypothesis.given(trees)
def test_property_set_get_roundtrip(tree):
  selection = pz.select(tree).at_instances_of(int)
  values = selection.get_sequence()
  marked = selection.apply_with_selected_index(lambda i, _: ("mark", i))
  reselected = pz.select(marked).at_subtrees_where(
      lambda s: isinstance(s, tuple) and len(s) == 2 and s[0] == "mark"
  )
  assert reselected.get_keypaths() == selection.get_keypaths()
  assert reselected.set_sequence(values) == tree
  assert all(isinstance(v, int) for v in values)
  assert len(values) == sum(
      isinstance(leaf, int) for leaf in jax.tree_util.tree_leaves(tree)
  )


@hypothesis.given(trees)
def test_property_apply_matches_tree_map(tree):
  result = pz.select(tree).at_pytree_leaves().apply(lambda v: [v])
  expected = jax.tree_util.tree_map(lambda v: [v], tree)
  assert result == expected


@hypothesis.given(trees)
def test_property_selected_and_inverted_cover_each_leaf_once(tree):
  selection = pz.select(tree).at_instances_of(Foo)
  covering = selection.get_keypaths() + selection.invert().get_keypaths()
  for leaf_path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
    owners = [p for p in covering if leaf_path[: len(p)] == p]
    assert len(owners) == 1


@hypothesis.given(trees, st.lists(st.integers(-8, 8), max_size=4))
def test_property_pick_nth_selected(tree, indices):
  selection = pz.select(tree).at_pytree_leaves()
  n = selection.count()
  picked = selection.pick_nth_selected(indices)
  wanted = {i + n if i < 0 else i for i in indices}
  expected = tuple(
      k for i, k in enumerate(selection.get_keypaths()) if i in wanted
  )
  assert picked.get_keypaths() == expected
  assert picked.deselect() == tree


@hypothesis.given(trees)
def test_property_at_keypaths_reselects_same_nodes(tree):
  selection = pz.select(tree).at_childless()
  again = pz.select(tree).at_keypaths(selection.get_keypaths())
  assert again.get_keypaths() == selection.get_keypaths()


# Linear-time behaviour.


@pz.pytree_dataclass
class Counted(pz.Struct):
  """Counts how often it is flattened (via `key_for_field`)."""

  child: Any
  flattens = 0  # Class attribute (no annotation), not a field.

  def key_for_field(self, field_name: str) -> Any:
    Counted.flattens += 1
    return GetAttrKey(field_name)


def test_selection_building_is_linear_in_tree_size():
  counts = {}
  for n in (100, 400):
    tree = [Counted([i, {"k": i}]) for i in range(n)]
    Counted.flattens = 0  # type: ignore[attr-defined]
    selection = pz.select(tree).at_instances_of(int)
    selection.apply(lambda v: v + 1)
    selection.invert().pick_nth_selected([0, -1]).count()
    pz.select(tree).at_keypaths([(SequenceKey(n - 1),)]).set(None)
    counts[n] = Counted.flattens  # type: ignore[attr-defined]
  assert counts[400] <= 4 * counts[100] + 10


def test_deep_chain_selection():
  tree: Any = 0
  for _ in range(60):
    tree = Counted(tree)
  selection = pz.select(tree).at_instances_of(int)
  assert len(selection.get_keypaths()[0]) == 60
  assert selection.set(1).child.child.child is not None


@hypothesis.given(trees)
def test_property_outermost_search_strategies_agree(tree):
  """The single-flatten and the recursive outermost searches agree."""

  def run():
    return (
        pz.select(tree).at_instances_of((int, Foo)).get_keypaths(),
        pz.select(tree)
        .at_subtrees_where(lambda k, s: len(k) == 2, with_keypath=True)
        .get_keypaths(),
        pz.select(tree).at_childless().get_keypaths(),
    )

  fast = run()
  original = selectors._IS_LEAF_TAKES_PATH
  selectors._IS_LEAF_TAKES_PATH = False
  try:
    slow = run()
  finally:
    selectors._IS_LEAF_TAKES_PATH = original
  assert fast == slow
