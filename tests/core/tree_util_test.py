"""Tests for penzai.core.tree_util."""

from __future__ import annotations

import collections
from typing import Any

import hypothesis
from hypothesis import strategies as st
import jax
import pytest

from penzai import pz
from penzai.core import tree_util

GetAttrKey = jax.tree_util.GetAttrKey
SequenceKey = jax.tree_util.SequenceKey
DictKey = jax.tree_util.DictKey


@pz.pytree_dataclass
class Bar(pz.Struct):
  body: Any


@pz.pytree_dataclass
class Foo(pz.Struct):
  sublayers: Any


@pz.pytree_dataclass
class Empty(pz.Struct):
  pass


def test_custom_getattr_key():
  key = tree_util.CustomGetAttrKey("foo")
  assert str(key) == ".foo"
  assert key == tree_util.CustomGetAttrKey("foo")
  assert hash(key) == hash(tree_util.CustomGetAttrKey("foo"))
  assert key != tree_util.CustomGetAttrKey("bar")


def test_pytreedef_alias():
  assert tree_util.PyTreeDef is jax.tree_util.PyTreeDef


@pytest.mark.parametrize("leaf", [1, "s", 2.5, jax.numpy.ones(2), object()])
def test_one_level_flatten_of_leaf_is_none(leaf):
  assert tree_util.tree_flatten_exactly_one_level(leaf) is None


@pytest.mark.parametrize("node", [None, (), [], {}, Empty()])
def test_one_level_flatten_of_childless_node_is_empty(node):
  result = tree_util.tree_flatten_exactly_one_level(node)
  assert result is not None
  children, treedef = result
  assert children == []
  assert treedef.unflatten([]) == node


def test_one_level_flatten_only_flattens_one_level():
  tree = {"b": [1, 2], "a": (3, None)}
  result = tree_util.tree_flatten_exactly_one_level(tree)
  assert result is not None
  keys_and_children, treedef = result
  assert keys_and_children == [(DictKey("a"), (3, None)), (DictKey("b"), [1, 2])]
  assert treedef.unflatten(["x", "y"]) == {"a": "x", "b": "y"}


def test_one_level_flatten_of_struct_uses_field_keys():
  result = tree_util.tree_flatten_exactly_one_level(Foo([Bar(1)]))
  assert result is not None
  [(key, child)], treedef = result
  assert key == GetAttrKey("sublayers") and child == [Bar(1)]
  assert treedef.unflatten([5]) == Foo(5)


def test_pretty_keystr_examples():
  tree = Foo([Bar({"x": 1})])
  path = (GetAttrKey("sublayers"), SequenceKey(0), GetAttrKey("body"), DictKey("x"))
  assert pz.pretty_keystr(path, tree) == "Foo.sublayers[0]/Bar.body['x']"
  assert pz.pretty_keystr((), tree) == ""
  assert pz.pretty_keystr((SequenceKey(0),), [1]) == "[0]"


def test_pretty_keystr_with_custom_getattr_key_subclass():
  class MyKey(tree_util.CustomGetAttrKey):
    pass

  @pz.pytree_dataclass
  class Custom(pz.Struct):
    a: Any

    def key_for_field(self, field_name: str) -> Any:
      return MyKey(field_name)

  assert pz.pretty_keystr((MyKey("a"), SequenceKey(1)), Custom([0, 1])) == (
      "Custom.a[1]"
  )


def test_pretty_keystr_missing_key_raises_keyerror():
  with pytest.raises(KeyError):
    pz.pretty_keystr((SequenceKey(3),), [1])
  with pytest.raises(KeyError):
    pz.pretty_keystr((SequenceKey(0), SequenceKey(0)), [1])


def test_pretty_keystr_plain_keys_without_type_names():
  tree = collections.OrderedDict(a=[{"b": 1}])
  path = (DictKey("a"), SequenceKey(0), DictKey("b"))
  assert pz.pretty_keystr(path, tree) == "['a'][0]['b']"


trees = st.recursive(
    st.integers(-5, 5) | st.none(),
    lambda children: st.lists(children, max_size=3)
    | st.tuples(children, children)
    | st.dictionaries(st.sampled_from("abc"), children, max_size=3)
    | st.builds(Bar, children),
    max_leaves=12,
)


@hypothesis.given(trees)
def test_one_level_flatten_roundtrips(tree):
  result = tree_util.tree_flatten_exactly_one_level(tree)
  if result is None:
    assert jax.tree_util.tree_leaves(tree) == [tree]
    return
  keys_and_children, treedef = result
  assert treedef.unflatten([c for _, c in keys_and_children]) == tree


@hypothesis.given(trees)
def test_pretty_keystr_matches_keystr_for_builtin_containers(tree):
  for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
    pretty = pz.pretty_keystr(path, tree)
    if not any(isinstance(k, GetAttrKey) for k in path):
      assert pretty == jax.tree_util.keystr(path)
    else:
      assert pretty.replace("/", "").replace("Bar.", ".") == (
          jax.tree_util.keystr(path)
      )
