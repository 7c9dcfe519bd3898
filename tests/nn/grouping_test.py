"""Tests for penzai.nn.grouping (through pz.nn)."""

import dataclasses
from typing import Any

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from treescope import formatting_util

from penzai import pz


@pz.pytree_dataclass
class Record(pz.nn.Layer):
  """Appends (tag, input, side inputs) to a log and returns input + [tag]."""

  tag: str = dataclasses.field(metadata={"pytree_node": False})
  log: list[Any] = dataclasses.field(metadata={"pytree_node": False})

  def __call__(self, x, /, **side_inputs):
    self.log.append((self.tag, x, side_inputs))
    return x + [self.tag]


@pz.pytree_dataclass
class Scale(pz.nn.Layer):
  by: float = dataclasses.field(metadata={"pytree_node": False})

  def __call__(self, x, /, **_unused):
    return x * self.by


@pz.pytree_dataclass
class Shift(pz.nn.Layer):
  by: float = dataclasses.field(metadata={"pytree_node": False})

  def __call__(self, x, /, **_unused):
    return x + self.by


@pz.pytree_dataclass
class TakeTwo(pz.nn.Layer):

  def __call__(self, x, /, **_unused):
    return x[{"a": slice(0, 2)}]


@pz.pytree_dataclass(has_implicitly_inherited_fields=True)
class MyBlock(pz.nn.Sequential):
  pass


@pz.pytree_dataclass(has_implicitly_inherited_fields=True)
class MyChecked(pz.nn.CheckedSequential):
  pass


@pytest.mark.parametrize(
    "make_group",
    [
        pz.nn.Sequential,
        lambda layers: pz.nn.NamedGroup("g", layers),
        lambda layers: pz.nn.CheckedSequential(pz.chk.ANY, pz.chk.ANY, layers),
        MyBlock,
    ],
)
def test_groups_run_in_order_and_forward_side_inputs(make_group):
  log = []
  group = make_group([Record("a", log), Record("b", log)])
  assert group([], k=1) == ["a", "b"]
  assert log == [("a", [], {"k": 1}), ("b", ["a"], {"k": 1})]


def test_empty_groups_are_identity():
  x = jnp.ones(3)
  assert pz.nn.Sequential([])(x) is x
  assert pz.nn.NamedGroup("marker", [])(x, unused=1) is x


def test_sequential_accepts_plain_callable_pytrees():
  seq = pz.nn.Sequential([jax.tree_util.Partial(jnp.multiply, 2.0)])
  np.testing.assert_allclose(seq(jnp.array(3.0)), 6.0)


def test_identity_and_field_layout():
  x = object()
  assert pz.nn.Identity()(x, anything=2) is x
  assert [f.name for f in dataclasses.fields(pz.nn.NamedGroup)] == [
      "name",
      "sublayers",
  ]
  assert [f.name for f in dataclasses.fields(pz.nn.CheckedSequential)] == [
      "input_like",
      "output_like",
      "sublayers",
  ]
  group = pz.nn.NamedGroup("gate", [Scale(2.0)])
  # `name` is static: only the sublayer structure is in the pytree.
  assert jax.tree_util.tree_leaves(group) == []
  checked = pz.nn.CheckedSequential(
      pz.chk.ArraySpec(shape=(2,)), pz.chk.ANY, []
  )
  assert jax.tree_util.tree_leaves(checked) == []
  assert pz.is_pytree_node_field(dataclasses.fields(checked)[2])
  assert not pz.is_pytree_node_field(dataclasses.fields(checked)[0])
  assert dataclasses.fields(checked)[0].metadata["treescope_always_collapse"]


def test_named_group_is_selectable_by_name():
  model = pz.nn.Sequential([
      pz.nn.NamedGroup("gate", [Scale(2.0)]),
      pz.nn.NamedGroup("other", [Scale(3.0)]),
  ])
  gate = (
      pz.select(model)
      .at_instances_of(pz.nn.NamedGroup)
      .where(lambda g: g.name == "gate")
      .get()
  )
  assert gate.sublayers[0].by == 2.0


def test_checked_sequential_checks_input_and_output():
  n = pz.chk.var("n")
  layer = pz.nn.CheckedSequential(
      input_like=pz.chk.ArraySpec(named_shape={"a": n}, dtype=jnp.floating),
      output_like=pz.chk.ArraySpec(named_shape={"a": n}, dtype=jnp.floating),
      sublayers=[Scale(2.0)],
  )
  x = pz.nx.wrap(jnp.ones(3), "a")
  np.testing.assert_allclose(layer(x).unwrap("a"), [2.0, 2.0, 2.0])
  with pytest.raises(
      pz.chk.StructureMismatchError,
      match="^While checking the input of a CheckedSequential:\n",
  ):
    layer(pz.nx.wrap(jnp.ones(3), "b"))

  # The output must agree with the input's dimension variables.
  shrink = pz.nn.CheckedSequential(
      input_like=pz.chk.ArraySpec(named_shape={"a": n}),
      output_like=pz.chk.ArraySpec(named_shape={"a": n}),
      sublayers=[TakeTwo()],
  )
  with pytest.raises(
      pz.chk.StructureMismatchError,
      match="^While checking the output of a CheckedSequential:\n",
  ):
    shrink(pz.nx.wrap(jnp.ones(3), "a"))


def test_check_structure_layer():
  layer = pz.nn.CheckStructure(pz.chk.ArraySpec(named_shape={"a": 2}))
  good = pz.nx.wrap(jnp.ones(2), "a")
  assert layer(good, side=1) is good
  with pytest.raises(pz.chk.StructureMismatchError):
    layer(pz.nx.wrap(jnp.ones(3), "a"))


def test_predicates():
  assert pz.nn.is_sequential_or_named(pz.nn.Sequential([]))
  assert pz.nn.is_sequential_or_named(MyBlock([]))
  assert pz.nn.is_sequential_or_named(pz.nn.NamedGroup("x", []))
  assert pz.nn.is_sequential_or_named(
      pz.nn.CheckedSequential(pz.chk.ANY, pz.chk.ANY, [])
  )
  assert not pz.nn.is_sequential_or_named(pz.nn.Identity())
  assert pz.nn.is_anonymous_sequential(pz.nn.Sequential([]))
  assert not pz.nn.is_anonymous_sequential(MyBlock([]))
  assert not pz.nn.is_anonymous_sequential([])


def test_inline_anonymous_sequentials():
  a, b, c, d = Scale(1.0), Scale(2.0), Scale(3.0), Scale(4.0)
  tree = pz.nn.Sequential([
      pz.nn.Sequential([a, pz.nn.Sequential([b])]),
      MyBlock([pz.nn.Sequential([c])]),
      pz.nn.NamedGroup("n", [pz.nn.Sequential([d])]),
      pz.nn.Residual(pz.nn.Sequential([pz.nn.Sequential([a])])),
  ])
  result = pz.nn.inline_anonymous_sequentials(tree)
  assert result == pz.nn.Sequential([
      a,
      b,
      MyBlock([c]),
      pz.nn.NamedGroup("n", [d]),
      # Residual is not a group: its child Sequential stays, but the plain
      # Sequential inside it is inlined.
      pz.nn.Residual(pz.nn.Sequential([a])),
  ])
  assert isinstance(result.sublayers, list)


def test_inline_groups_with_custom_filters():
  tree = MyBlock([pz.nn.NamedGroup("x", [Scale(2.0)]), Scale(3.0)])
  named_inlined = pz.nn.inline_groups(
      tree,
      parent_filter=lambda n: isinstance(n, MyBlock),
      child_filter=lambda n: isinstance(n, pz.nn.NamedGroup),
  )
  assert named_inlined == MyBlock([Scale(2.0), Scale(3.0)])
  untouched = pz.nn.inline_groups(
      tree, parent_filter=lambda n: False, child_filter=lambda n: True
  )
  assert untouched == tree


def test_inline_preserves_variables_by_identity():
  param = pz.Parameter(value=jnp.array(2.0), label="p")

  @pz.pytree_dataclass
  class UsesParam(pz.nn.Layer):
    p: Any

    def __call__(self, x, /, **_):
      return x * self.p.value

  tree = pz.nn.Sequential([pz.nn.Sequential([UsesParam(param)])])
  result = pz.nn.inline_anonymous_sequentials(tree)
  assert result.sublayers[0].p is param


def _nested_model(draw_ops):
  """Builds a nested group tree from a hypothesis-drawn structure."""
  kind, payload = draw_ops
  if kind == "leaf":
    return Shift(payload) if payload >= 0 else Scale(-payload)
  group_kind, children = payload
  built = [_nested_model(child) for child in children]
  if group_kind == 0:
    return pz.nn.Sequential(built)
  if group_kind == 1:
    return MyBlock(built)
  return pz.nn.NamedGroup(f"g{len(built)}", built)


_structures = st.recursive(
    st.tuples(st.just("leaf"), st.integers(-3, 3).map(float)),
    lambda children: st.tuples(
        st.just("group"),
        st.tuples(st.integers(0, 2), st.lists(children, max_size=3)),
    ),
    max_leaves=8,
)


@hypothesis.given(_structures)
def test_inlining_preserves_behavior_and_removes_nested_anonymous(structure):
  model = _nested_model(structure)
  inlined = pz.nn.inline_anonymous_sequentials(model)
  assert inlined(1.5) == model(1.5)
  groups = [
      node
      for node in jax.tree_util.tree_leaves(
          inlined, is_leaf=pz.nn.is_sequential_or_named
      )
      if pz.nn.is_sequential_or_named(node)
  ]
  stack = list(groups)
  while stack:
    group = stack.pop()
    for child in group.sublayers:
      assert not pz.nn.is_anonymous_sequential(child)
      if pz.nn.is_sequential_or_named(child):
        stack.append(child)


def test_treescope_colors():
  gray = "#cdcdcd"
  gray_pair = (gray, "color-mix(in oklab, #cdcdcd 25%, white)")
  assert pz.nn.Sequential([]).treescope_color() == gray_pair
  assert pz.nn.Identity().treescope_color() == gray_pair
  assert pz.nn.CheckStructure(pz.chk.ANY).treescope_color() == gray
  assert (
      pz.nn.CheckedSequential(pz.chk.ANY, pz.chk.ANY, []).treescope_color()
      == gray
  )
  accent = formatting_util.color_from_string(
      f"{MyBlock.__module__}.{MyBlock.__qualname__}"
  )
  assert MyBlock([]).treescope_color() == (
      accent,
      f"color-mix(in oklab, {accent} 25%, white)",
  )
  checked_accent = formatting_util.color_from_string(
      f"{MyChecked.__module__}.{MyChecked.__qualname__}"
  )
  assert MyChecked(pz.chk.ANY, pz.chk.ANY, []).treescope_color() == (
      checked_accent,
      gray,
  )
  name_accent = formatting_util.color_from_string("foo")
  assert pz.nn.NamedGroup("foo", []).treescope_color() == (
      name_accent,
      f"color-mix(in oklab, {name_accent} 25%, white)",
  )


def test_reprs():
  assert repr(pz.nn.Sequential([pz.nn.Identity()])) == (
      "Sequential(sublayers=[Identity()])"
  )
  assert repr(pz.nn.NamedGroup("foo", [pz.nn.Identity()])) == (
      "NamedGroup(name='foo', sublayers=[Identity()])"
  )
