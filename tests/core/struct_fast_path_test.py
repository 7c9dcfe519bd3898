"""Struct pytree fast path: flattening results, aux reuse and jit dispatch.

Structs are registered with JAX through per-class generated functions that
remember each instance's `StructStaticMetadata`. These tests pin down that the
observable results are those of the reference definition and that repeated
jitted calls do not compare static metadata field by field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from penzai import pz
from penzai.core import struct


@pz.pytree_dataclass
class Pair(pz.Struct):
  left: Any
  tag: str = dataclasses.field(metadata={"pytree_node": False})
  right: Any
  extra: tuple[int, ...] = dataclasses.field(
      default=(), metadata={"pytree_node": False}
  )


@pz.pytree_dataclass
class NoChildren(pz.Struct):
  name: str = dataclasses.field(metadata={"pytree_node": False})


@pz.pytree_dataclass
class StringKeys(pz.Struct):
  a: Any
  b: Any

  def key_for_field(self, field_name: str) -> str:
    return f"key_{field_name}"


@pz.pytree_dataclass
class CustomInit(pz.Struct):
  value: Any
  doubled: Any

  def __init__(self, value: Any):
    # Runs on a mutable proxy of the frozen class (see `pytree_dataclass`).
    self.value = value  # type: ignore[misc]
    self.doubled = value * 2  # type: ignore[misc]


def _root_metadata(value: Any) -> Any:
  """The aux data JAX recorded for the root node of `value`."""
  treedef: Any = jax.tree_util.tree_structure(value)
  node_type, aux = treedef.node_data()
  assert node_type is type(value)
  return aux


def test_flatten_gives_reference_children_and_metadata():
  pair = Pair(left=1, tag="t", right=[2, 3], extra=(4,))
  children, aux = pair.tree_flatten()
  assert list(children) == [1, [2, 3]]
  assert aux == struct.StructStaticMetadata(
      child_field_names=["left", "right"],
      static_fields={"tag": "t", "extra": (4,)},
  )
  leaves, treedef = jax.tree_util.tree_flatten(pair)
  assert leaves == [1, 2, 3]
  assert jax.tree_util.tree_unflatten(treedef, leaves) == pair


def test_flatten_with_keys_uses_field_keys():
  paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(
      Pair(left=1, tag="t", right=2)
  )[0]]
  assert paths == [
      (jax.tree_util.GetAttrKey("left"),),
      (jax.tree_util.GetAttrKey("right"),),
  ]
  custom = [path for path, _ in jax.tree_util.tree_flatten_with_path(
      StringKeys(a=1, b=2)
  )[0]]
  assert custom == [("key_a",), ("key_b",)]


def test_struct_without_children_round_trips():
  value = NoChildren(name="n")
  leaves, treedef = jax.tree_util.tree_flatten(value)
  assert leaves == []
  rebuilt = jax.tree_util.tree_unflatten(treedef, [])
  assert rebuilt == value and rebuilt is not value


def test_repeated_flatten_reuses_the_same_metadata_object():
  pair = Pair(left=1, tag="t", right=2)
  first = jax.tree_util.tree_structure(pair)
  second = jax.tree_util.tree_structure(pair)
  assert first == second
  assert _root_metadata(pair) is _root_metadata(pair)


def test_unflatten_skips_init_and_keeps_static_fields():
  value = CustomInit(value=3)
  assert value.doubled == 6
  mapped = jax.tree_util.tree_map(lambda leaf: leaf + 1, value)
  # Rebuilt without `__init__`: each child is mapped independently.
  assert (mapped.value, mapped.doubled) == (4, 7)
  assert type(mapped) is CustomInit


def test_replace_reflects_new_static_values_after_flattening():
  pair = Pair(left=1, tag="old", right=2)
  jax.tree_util.tree_structure(pair)  # Remember the metadata of `pair`.
  renamed = dataclasses.replace(pair, tag="new")
  assert _root_metadata(renamed).static_fields == {"tag": "new", "extra": ()}
  assert jax.tree_util.tree_structure(renamed) != jax.tree_util.tree_structure(
      pair
  )


def test_attributes_dict_and_equality_ignore_remembered_metadata():
  pair = Pair(left=1, tag="t", right=2)
  jax.tree_util.tree_structure(pair)
  assert pair.attributes_dict() == {
      "left": 1, "tag": "t", "right": 2, "extra": ()
  }
  assert pair == Pair(left=1, tag="t", right=2)
  assert Pair.from_attributes(**pair.attributes_dict()) == pair


def test_jit_dispatch_with_same_model_does_not_compare_metadata(monkeypatch):
  model = pz.nn.Linear.from_config(
      name="lin", init_base_rng=jax.random.key(0),
      input_axes={"i": 2}, output_axes={"o": 3},
  )
  frozen = pz.freeze_params(model)
  x = pz.nx.wrap(jnp.ones((2,)), "i")
  fn = jax.jit(lambda layer, arg: layer(arg).unwrap("o"))
  expected = fn(frozen, x)
  comparisons = []
  original_eq = struct.StructStaticMetadata.__eq__

  def counting_eq(self: Any, other: Any) -> Any:
    comparisons.append(1)
    return original_eq(self, other)

  monkeypatch.setattr(struct.StructStaticMetadata, "__eq__", counting_eq)
  result = fn(frozen, x)
  assert not comparisons
  assert jnp.array_equal(result, expected)
  # A structurally equal copy (new metadata objects) still hits the cache
  # after an equality comparison.
  copy = jax.tree_util.tree_map(lambda leaf: leaf, frozen)
  assert jnp.array_equal(fn(copy, x), expected)
  assert fn._cache_size() == 1  # pylint: disable=protected-access


@given(
    left=st.integers(),
    right=st.lists(st.integers(), max_size=3),
    tag=st.text(max_size=5),
    extra=st.tuples(st.integers()),
)
def test_flatten_unflatten_round_trip(
    left: int, right: list[int], tag: str, extra: tuple[int]
):
  pair = Pair(left=left, tag=tag, right=right, extra=extra)
  leaves, treedef = jax.tree_util.tree_flatten(pair)
  rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
  assert rebuilt == pair
  assert jax.tree_util.tree_structure(rebuilt) == treedef  # type: ignore[operator]
  with pytest.raises(ValueError):
    jax.tree_util.tree_unflatten(treedef, leaves + [0])
