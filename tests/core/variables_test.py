"""Tests for penzai.core.variables (Parameter, StateVariable, unbind/bind, variable_jit)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import treescope

from penzai import pz
from penzai.core import variables


@pz.pytree_dataclass
class Pair(pz.Struct):
  first: Any
  second: Any


@pz.pytree_dataclass
class Counter(pz.Struct):
  """Adds its parameter to the input and counts calls in a state variable."""

  weight: Any
  count: Any

  def __call__(self, x):
    self.count.value = self.count.value + 1
    return x * self.weight.value


def _param(label: str, value: Any = 1.0) -> pz.Parameter:
  return pz.Parameter(label=label, value=value)


# ---------------------------------------------------------------------------
# Construction and value handling


class TestParameter:

  def test_constructor_is_keyword_only(self):
    with pytest.raises(TypeError):
      pz.Parameter("p", 1.0)  # type: ignore[misc]
    with pytest.raises(TypeError):
      pz.Parameter(value=1.0)  # type: ignore[call-arg]

  def test_value_leaves_become_jax_arrays(self):
    p = pz.Parameter(label="p", value={"a": 1, "b": [np.ones(2), 2.0], "c": None})
    assert isinstance(p.value["a"], jax.Array)
    assert p.value["a"].weak_type
    assert isinstance(p.value["b"], list)
    assert all(isinstance(x, jax.Array) for x in p.value["b"])
    assert p.value["c"] is None

  def test_string_value_is_rejected(self):
    with pytest.raises(TypeError):
      pz.Parameter(label="p", value="hello")

  def test_setters(self):
    p = _param("p", 1.0)
    p.value = 2
    assert isinstance(p.value, jax.Array) and int(p.value) == 2
    p.set_value(np.arange(3))
    np.testing.assert_array_equal(p.value, [0, 1, 2])
    assert isinstance(p.value, jax.Array)

  def test_metadata_defaults(self):
    p = _param("p")
    assert p.metadata == {}
    meta: dict[str, Any] = {}
    q = pz.Parameter(label="q", value=1.0, metadata=meta)
    assert q.metadata == {} and q.metadata is not meta  # falsy dict replaced
    full = {"k": 1}
    r = pz.Parameter(label="r", value=1.0, metadata=full)
    assert r.metadata is full

  def test_identity_equality_and_hash(self):
    p, q = _param("p"), _param("p")
    assert p != q and p == p
    assert len({p, q, p}) == 2

  def test_is_opaque_leaf_for_jax(self):
    p = _param("p")
    assert jax.tree_util.tree_leaves({"p": p, "x": 1}) == [p, 1]
    with pytest.raises(TypeError):
      jax.jit(lambda v: v)(p)

  def test_freeze_and_unfreeze(self):
    meta = {"init": "ones"}
    p = pz.Parameter(label="p", value=jnp.ones(2), metadata=meta)
    frozen = p.freeze()
    assert type(frozen) is pz.ParameterValue
    assert frozen.label == "p" and frozen.metadata is meta
    assert frozen.value is p.value
    leaves = jax.tree_util.tree_flatten_with_path(frozen)[0]
    assert len(leaves) == 1
    assert leaves[0][0] == (jax.tree_util.GetAttrKey("value"),)
    copy = frozen.unfreeze_as_copy()
    assert type(copy) is pz.Parameter and copy is not p
    assert copy.label == "p" and copy.metadata == meta
    np.testing.assert_array_equal(copy.value, p.value)
    assert frozen.get_slot() == p.get_slot() == pz.ParameterSlot("p")

  def test_protocol_hooks(self):
    p = _param("p", 1.0)
    state = p.__get_state_as_jax_pytree__()
    assert state == p.freeze()
    p.__set_state_from_jax_pytree__(pz.ParameterValue(label="p", value=5.0))
    assert float(p.value) == 5.0
    new = state.__jax_pytree_state_to_new_variable__()
    assert isinstance(new, pz.Parameter) and float(new.value) == 1.0

  def test_update(self):
    p = _param("p", 1.0)
    p.update(pz.ParameterValue(label="p", value=3.0, metadata={"x": 1}))
    assert float(p.value) == 3.0 and p.metadata == {}
    with pytest.raises(ValueError, match="^Cannot update variable .* with incompatible value"):
      p.update(pz.ParameterValue(label="q", value=3.0))
    with pytest.raises(ValueError, match="incompatible valueStateVariableValue"):
      p.update(pz.StateVariableValue(label="p", value=3.0))

  def test_value_structs_are_abstract(self):
    with pytest.raises(TypeError):
      variables.LabeledVariableValue(label="p", value=1.0)
    with pytest.raises(TypeError):
      variables.LabeledVariable(label="p", value=1.0)  # type: ignore[abstract]

  def test_value_field_layout(self):
    names = [f.name for f in dataclasses.fields(pz.ParameterValue)]
    assert names == ["label", "value", "metadata"]
    assert pz.ParameterValue(label="a", value=1).metadata == {}
    assert [f.name for f in dataclasses.fields(pz.ParameterSlot)] == ["label"]

  def test_colors(self):
    assert _param("p").treescope_color() == "#93cce1"
    assert _param("p").freeze().treescope_color() == "#a0b0c9"
    assert pz.ParameterSlot("p").treescope_color() == ("#93cce1", "#cdcdcd")
    s = pz.StateVariable(1)
    assert s.treescope_color() == "#f57603"
    assert s.freeze().treescope_color() == "#d4af27"
    assert s.get_slot().treescope_color() == ("#f57603", "#cdcdcd")

  def test_repr(self):
    p = pz.Parameter(label="p", value=jnp.ones(2))
    assert repr(p) == (
        "Parameter(label='p', value=<jax.Array([1., 1.], dtype=float32)>,"
        " metadata={})"
    )
    s = pz.StateVariable(0, label="s")
    assert repr(s).startswith("StateVariable(label='s', value=")


class TestRendering:

  def test_roundtrip_rendering_is_marked_non_roundtrippable(self):
    p = pz.Parameter(label="p", value=jnp.ones(2))
    text = treescope.render_to_text(p, roundtrip_mode=True)
    assert text.startswith("<penzai.core.variables.Parameter(\n  label='p',")
    assert text.rstrip().endswith(")>")
    expanded = treescope.render_to_text(p)
    assert expanded.splitlines() == [
        "Parameter(",
        "  label='p',",
        "  value=<jax.Array([1., 1.], dtype=float32)>,",
        "  metadata={},",
        ")",
    ]

  def test_html_uses_variable_colors(self):
    html = treescope.render_to_html(
        [pz.Parameter(label="p", value=1.0), pz.StateVariable(1, label="s")],
        compressed=False,
    ).lower()
    assert "#93cce1" in html and "#f57603" in html


class TestSlots:

  def test_slot_equality_and_hash(self):
    assert pz.ParameterSlot("p") == pz.ParameterSlot(label="p")
    assert pz.ParameterSlot("p") != pz.StateVariableSlot("p")
    assert len({pz.ParameterSlot("p"), pz.ParameterSlot("p")}) == 1
    assert jax.tree_util.tree_leaves(pz.ParameterSlot("p")) == []

  def test_slot_value_raises(self):
    with pytest.raises(
        pz.UnboundVariableError,
        match=re.escape(
            "Tried to access the .value property of a ParameterSlot:"
            " ParameterSlot(label='p')."
        ),
    ):
      _ = pz.ParameterSlot("p").value
    with pytest.raises(
        pz.UnboundVariableError,
        match=re.escape(
            "Tried to access the .value property of a StateVariableSlot:"
            " StateVariableSlot(label='s')."
        ),
    ):
      _ = pz.StateVariableSlot("s").value


class TestStateVariable:

  def test_positional_value_and_auto_label(self):
    s = pz.StateVariable(3)
    assert s.label == pz.AutoStateVarLabel(var_id=id(s))
    assert int(s.value) == 3
    t = pz.StateVariable(value=4, label="t", metadata={"a": 1})
    assert t.label == "t" and t.metadata == {"a": 1}
    frozen = t.freeze()
    assert type(frozen) is pz.StateVariableValue
    copy = frozen.unfreeze_as_copy()
    assert type(copy) is pz.StateVariable and copy.label == "t"
    assert copy.get_slot() == pz.StateVariableSlot("t")

  def test_scoped_labels_nest_and_resume(self):
    with pz.scoped_auto_state_var_labels():
      a = pz.StateVariable(0)
      with pz.scoped_auto_state_var_labels(group="inner"):
        b = pz.StateVariable(0)
        c = pz.StateVariable(0)
      d = pz.StateVariable(0)
      e = pz.StateVariable(0, label="explicit")
      f = pz.StateVariable(0)
    g = pz.StateVariable(0)
    assert a.label == pz.ScopedStateVarLabel(group=None, index=0)
    assert b.label == pz.ScopedStateVarLabel(group="inner", index=0)
    assert c.label == pz.ScopedStateVarLabel(group="inner", index=1)
    assert d.label == pz.ScopedStateVarLabel(group=None, index=1)
    assert e.label == "explicit"
    assert f.label == pz.ScopedStateVarLabel(group=None, index=2)
    assert g.label == pz.AutoStateVarLabel(var_id=id(g))

  def test_scope_is_restored_after_error(self):
    with pytest.raises(RuntimeError):
      with pz.scoped_auto_state_var_labels(group="g"):
        raise RuntimeError("boom")
    s = pz.StateVariable(0)
    assert isinstance(s.label, pz.AutoStateVarLabel)

  def test_scoped_labels_give_reproducible_labels(self):
    def build():
      with pz.scoped_auto_state_var_labels(group="model"):
        return [pz.StateVariable(i) for i in range(3)]

    assert [v.label for v in build()] == [v.label for v in build()]

  def test_auto_labels_sort_with_strings(self):
    labels = [pz.ScopedStateVarLabel(group=None, index=1), "b",
              pz.AutoStateVarLabel(var_id=5), "a"]
    ordered = sorted(labels)
    assert ordered[:2] == ["a", "b"]
    # usable as dict keys in pytrees (JAX sorts dict keys)
    leaves = jax.tree_util.tree_leaves({label: i for i, label in enumerate(labels)})
    assert sorted(leaves) == [0, 1, 2, 3]

  def test_creating_and_mutating_inside_vmap(self):
    def f(x):
      s = pz.StateVariable(x)
      s.value = s.value * 2
      return s.value

    np.testing.assert_array_equal(jax.vmap(f)(jnp.arange(3.0)), [0.0, 2.0, 4.0])


# ---------------------------------------------------------------------------
# unbind / bind / freeze


class TestUnbind:

  def test_unbind_replaces_with_slots_in_flatten_order(self):
    p, q = _param("p"), _param("q")
    s = pz.StateVariable(0, label="s")
    tree = {"b": [q, p], "a": Pair(s, q), "c": 7}
    unbound, found = pz.unbind_variables(tree)
    assert found == (s, q, p)
    assert unbound == {
        "b": [pz.ParameterSlot("q"), pz.ParameterSlot("p")],
        "a": Pair(pz.StateVariableSlot("s"), pz.ParameterSlot("q")),
        "c": 7,
    }
    assert tree["b"][0] is q  # input untouched

  def test_unbind_freeze(self):
    p = _param("p", 2.0)
    unbound, frozen = pz.unbind_variables([p, p], freeze=True)
    assert unbound == [pz.ParameterSlot("p")] * 2
    assert len(frozen) == 1 and isinstance(frozen[0], pz.ParameterValue)
    assert float(frozen[0].value) == 2.0

  def test_predicate_keeps_unselected_in_place(self):
    p, q = _param("p"), _param("q")
    unbound, found = pz.unbind_variables([p, q], predicate=lambda v: v.label == "q")
    assert found == (q,)
    assert unbound[0] is p and unbound[1] == pz.ParameterSlot("q")

  def test_param_and_state_with_same_label_do_not_conflict(self):
    p, s = _param("x"), pz.StateVariable(0, label="x")
    unbound, found = pz.unbind_variables([p, s])
    assert found == (p, s)
    assert unbound == [pz.ParameterSlot("x"), pz.StateVariableSlot("x")]

  def test_two_variables_with_same_slot_conflict(self):
    p1, p2 = _param("w"), _param("w")
    tree = {"a": Pair(1, p1), "b": [p2]}
    with pytest.raises(
        pz.VariableConflictError,
        match=re.escape(
            "Found two Variables with the same slot ParameterSlot(label='w')!"
            " At keypaths tree['b'][0], tree['a'].second."
        ),
    ):
      pz.unbind_variables(tree)

  def test_slot_already_in_use(self):
    tree = [pz.ParameterSlot("p"), _param("p")]
    with pytest.raises(
        pz.VariableConflictError,
        match=re.escape(
            "Variable slot ParameterSlot(label='p') is already in use in the tree."
        ),
    ):
      pz.unbind_variables(tree)
    # not a conflict when that variable isn't being unbound
    unbound, found = pz.unbind_variables(tree, predicate=lambda v: False)
    assert found == () and unbound[0] == pz.ParameterSlot("p")

  def test_unbind_params_and_state_vars(self):
    p, q = _param("p"), _param("q")
    s = pz.StateVariable(0, label="s")
    tree = [p, s, q]
    unbound, params = pz.unbind_params(tree)
    assert params == (p, q) and unbound[1] is s
    _, params = pz.unbind_params(tree, predicate=lambda v: v.label == "q")
    assert params == (q,)
    unbound, states = pz.unbind_state_vars(tree, freeze=True)
    assert states == (s.freeze(),) and unbound[0] is p
    assert unbound[1] == pz.StateVariableSlot("s")
    _, states = pz.unbind_state_vars(tree, predicate=lambda v: False)
    assert states == ()

  def test_empty_and_leaf_trees(self):
    assert pz.unbind_variables(None) == (None, ())
    p = _param("p")
    assert pz.unbind_variables(p) == (pz.ParameterSlot("p"), (p,))


class TestBind:

  def test_bind_round_trip_and_sharing(self):
    p = _param("p")
    s = pz.StateVariable(1, label="s")
    tree = Pair([p, s], p)
    unbound, found = pz.unbind_variables(tree)
    rebound = pz.bind_variables(unbound, found)
    assert rebound.first[0] is p and rebound.second is p and rebound.first[1] is s

  def test_bind_frozen_values(self):
    p = _param("p", 3.0)
    unbound, frozen = pz.unbind_variables([p], freeze=True)
    rebound = pz.bind_variables(unbound, frozen)
    assert rebound == [p.freeze()]

  def test_unfreeze_as_copy_shares_one_new_variable(self):
    p = _param("p", 3.0)
    unbound, frozen = pz.unbind_variables([p, {"x": p}], freeze=True)
    rebound = pz.bind_variables(unbound, frozen, unfreeze_as_copy=True)
    new = rebound[0]
    assert isinstance(new, pz.Parameter) and new is not p
    assert rebound[1]["x"] is new
    new.value = 4.0
    assert float(p.value) == 3.0

  def test_unfreeze_as_copy_rejects_mutable_variables(self):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "unfreeze_as_copy=True is only allowed if all variables are"
            " variable values (e.g. ParameterValue or StateVariableValue)."
        ),
    ):
      pz.bind_variables([pz.ParameterSlot("p")], [_param("p")], unfreeze_as_copy=True)

  def test_repeated_slot(self):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Cannot substitute multiple variables into the same slot!"
            " Repeated slot: ParameterSlot(label='p')"
        ),
    ):
      pz.bind_variables([pz.ParameterSlot("p")], [_param("p"), _param("p")])

  def test_unused_variables(self):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Did not find any matching slots for some variables:"
            " {StateVariableSlot(label='s')}"
        ),
    ):
      pz.bind_variables([pz.ParameterSlot("p")], [_param("p"), pz.StateVariable(0, label="s")])
    result = pz.bind_variables(
        [pz.ParameterSlot("p")], [pz.StateVariable(0, label="s")], allow_unused=True
    )
    assert result == [pz.ParameterSlot("p")]

  def test_unmatched_slots_stay(self):
    q = _param("q")
    result = pz.bind_variables([pz.ParameterSlot("p"), pz.ParameterSlot("q")], iter([q]))
    assert result[0] == pz.ParameterSlot("p") and result[1] is q


class TestFreeze:

  def test_freeze_variables(self):
    p = _param("p", 1.0)
    s = pz.StateVariable(2, label="s")
    frozen = pz.freeze_variables({"a": [p, p], "b": s, "c": 3})
    assert frozen["a"][0] == p.freeze() and frozen["a"][1] == p.freeze()
    assert frozen["b"] == s.freeze() and frozen["c"] == 3
    only_p = pz.freeze_variables([p, s], predicate=lambda v: v.label == "p")
    assert only_p[0] == p.freeze() and only_p[1] is s

  def test_freeze_params_and_state_vars(self):
    p, q = _param("p"), _param("q")
    s = pz.StateVariable(2, label="s")
    out = pz.freeze_params([p, s, q])
    assert out[0] == p.freeze() and out[1] is s and out[2] == q.freeze()
    out = pz.freeze_params([p, q], predicate=lambda v: v.label == "q")
    assert out[0] is p and out[1] == q.freeze()
    out = pz.freeze_state_vars([p, s])
    assert out[0] is p and out[1] == s.freeze()
    out = pz.freeze_state_vars([s], predicate=lambda v: False)
    assert out[0] is s


# ---------------------------------------------------------------------------
# Property tests: unbind / bind round trips


@st.composite
def _trees_with_variables(draw):
  """Random nested lists/dicts whose leaves are ints or (shared) variables."""
  n_params = draw(st.integers(0, 4))
  n_states = draw(st.integers(0, 3))
  pool: list[Any] = [_param(f"p{i}", float(i)) for i in range(n_params)]
  pool += [pz.StateVariable(i, label=f"s{i}") for i in range(n_states)]
  leaf = st.integers(0, 9)
  if pool:
    leaf = leaf | st.sampled_from(pool)
  tree = draw(
      st.recursive(
          leaf,
          lambda children: st.lists(children, max_size=3)
          | st.dictionaries(st.sampled_from("abc"), children, max_size=3)
          | st.builds(Pair, children, children),
          max_leaves=12,
      )
  )
  return tree


def _same_leaves(a: Any, b: Any) -> bool:
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  return len(la) == len(lb) and all(x is y for x, y in zip(la, lb))


@hypothesis.given(_trees_with_variables())
def test_unbind_then_bind_restores_identical_tree(tree):
  unbound, found = pz.unbind_variables(tree)
  assert not any(
      isinstance(leaf, pz.AbstractVariable) for leaf in jax.tree_util.tree_leaves(unbound)
  )
  leaf_vars = [x for x in jax.tree_util.tree_leaves(tree) if isinstance(x, pz.AbstractVariable)]
  assert list(found) == list(dict.fromkeys(leaf_vars))  # distinct, in order
  rebound = pz.bind_variables(unbound, found)
  assert jax.tree_util.tree_structure(rebound) == jax.tree_util.tree_structure(tree)
  assert _same_leaves(rebound, tree)


@hypothesis.given(_trees_with_variables())
def test_frozen_round_trip_equals_freezing_in_place(tree):
  unbound, frozen = pz.unbind_variables(tree, freeze=True)
  assert pz.bind_variables(unbound, frozen) == pz.freeze_variables(tree)
  copied = pz.bind_variables(unbound, frozen, unfreeze_as_copy=True)
  assert pz.freeze_variables(copied) == pz.freeze_variables(tree)


@hypothesis.given(_trees_with_variables())
def test_partial_unbinds_compose(tree):
  without_params, params = pz.unbind_params(tree)
  without_any, states = pz.unbind_state_vars(without_params)
  assert all(isinstance(p, pz.Parameter) for p in params)
  assert all(isinstance(s, pz.StateVariable) for s in states)
  restored = pz.bind_variables(pz.bind_variables(without_any, states), params)
  assert _same_leaves(restored, tree)


# ---------------------------------------------------------------------------
# Under JAX transformations via unbind/freeze


def test_jit_with_unbound_frozen_state():
  model = Counter(weight=_param("w", 3.0), count=pz.StateVariable(0, label="n"))
  unbound, frozen = pz.unbind_variables(model, freeze=True)

  @jax.jit
  def step(frozen_vars, x):
    local = pz.bind_variables(unbound, frozen_vars, unfreeze_as_copy=True)
    y = local(x)
    _, new_frozen = pz.unbind_variables(local, freeze=True)
    return y, new_frozen

  y, new_frozen = step(frozen, jnp.ones(2))
  np.testing.assert_allclose(y, [3.0, 3.0])
  for var, value in zip(pz.unbind_variables(model)[1], new_frozen):
    var.update(value)
  assert int(model.count.value) == 1 and float(model.weight.value) == 3.0


def test_grad_through_frozen_params():
  model = Counter(weight=_param("w", 3.0), count=pz.StateVariable(0, label="n"))
  unbound, params = pz.unbind_params(model, freeze=True)

  def loss(params, x):
    local = pz.bind_variables(unbound, params, unfreeze_as_copy=True)
    return jnp.sum(local(x))

  grads = jax.grad(loss)(params, jnp.arange(3.0))
  assert isinstance(grads[0], pz.ParameterValue)
  assert float(grads[0].value) == pytest.approx(3.0)
  assert len(grads) == 1  # only the parameter was unbound


def test_vmap_over_frozen_values():
  p = _param("p", jnp.arange(3.0))
  unbound, frozen = pz.unbind_params([p], freeze=True)

  def f(frozen_vars):
    (local,) = pz.bind_variables(unbound, frozen_vars, unfreeze_as_copy=True)
    return local.value * 2

  out = jax.vmap(f)(frozen)
  np.testing.assert_array_equal(out, [0.0, 2.0, 4.0])


def test_scan_carries_frozen_state():
  model = Counter(weight=_param("w", 2.0), count=pz.StateVariable(0, label="n"))
  unbound, frozen = pz.unbind_state_vars(model, freeze=True)

  def body(carry, x):
    local = pz.bind_variables(unbound, carry, unfreeze_as_copy=True)
    y = local(x)
    return pz.unbind_state_vars(local, freeze=True)[1], y

  final, ys = jax.lax.scan(body, frozen, jnp.arange(4.0))
  np.testing.assert_allclose(ys, [0.0, 2.0, 4.0, 6.0])
  assert int(final[0].value) == 4


def test_closed_over_variable_can_be_read_in_jit():
  p = _param("p", 2.0)
  assert float(jax.jit(lambda x: x * p.value)(3.0)) == 6.0


# ---------------------------------------------------------------------------
# variable_jit


def test_variable_jit_matches_eager_mutation():
  def run(model, x):
    return model(model(x))

  eager = Counter(weight=_param("w", 2.0), count=pz.StateVariable(0, label="n"))
  jitted_model = Counter(weight=_param("w", 2.0), count=pz.StateVariable(0, label="n"))
  expected = run(eager, jnp.ones(2))
  jitted_run = pz.variable_jit(run)
  got = jitted_run(jitted_model, jnp.ones(2))
  np.testing.assert_allclose(got, expected)
  assert int(jitted_model.count.value) == int(eager.count.value) == 2
  got = jitted_run(model=jitted_model, x=jnp.ones(2))
  assert int(jitted_model.count.value) == 4


def _accumulate(model, x):
  """One step: count calls, accumulate outputs into a state, decay the weight."""
  y = model["layer"](x)
  model["total"].value = model["total"].value + jnp.sum(y)
  model["layer"].weight.value = model["layer"].weight.value * 0.5
  return y


_jitted_accumulate = pz.variable_jit(_accumulate)


def _fresh_accumulator() -> dict[str, Any]:
  return {
      "layer": Counter(weight=_param("w", 1.5), count=pz.StateVariable(0, label="n")),
      "total": pz.StateVariable(jnp.zeros(()), label="total"),
  }


@hypothesis.given(
    st.lists(
        st.lists(st.floats(-10, 10, width=32), min_size=3, max_size=3),
        min_size=1,
        max_size=4,
    )
)
def test_variable_jit_steps_equal_eager_steps(inputs):
  eager, jitted = _fresh_accumulator(), _fresh_accumulator()
  for row in inputs:
    x = jnp.asarray(row, dtype=jnp.float32)
    np.testing.assert_allclose(
        _jitted_accumulate(jitted, x), _accumulate(eager, x), rtol=1e-6, atol=1e-6
    )
  for e, j in zip(pz.unbind_variables(eager)[1], pz.unbind_variables(jitted)[1]):
    assert e.label == j.label
    np.testing.assert_allclose(j.value, e.value, rtol=1e-5, atol=1e-5)
  assert int(jitted["layer"].count.value) == len(inputs)


def test_variable_jit_updates_parameters_and_kwargs():
  p = _param("p", 1.0)

  def bump(x, *, param):
    param.value = param.value + x
    return param.value * 10

  out = pz.variable_jit(bump)(2.0, param=p)
  assert float(out) == 30.0 and float(p.value) == 3.0


def test_variable_jit_static_args():
  s = pz.StateVariable(0, label="s")
  calls = []

  def f(state, n, mode="add"):
    calls.append(None)
    for _ in range(n):
      state.value = state.value + (1 if mode == "add" else -1)
    return state.value

  g = pz.variable_jit(f, static_argnums=(1,), static_argnames=("mode",))
  assert int(g(s, 3)) == 3
  assert int(g(s, 3)) == 6
  assert int(g(s, 2, mode="sub")) == 4
  assert len(calls) == 2  # retraced only for the new static values
  h = pz.variable_jit(f, static_argnames=("n", "mode"))
  assert int(h(s, n=1)) == 5


def test_variable_jit_donation():
  p = _param("p", jnp.ones(3))
  old = p.value

  def f(param, x):
    param.value = param.value + x
    return x

  g = pz.variable_jit(f, donate_variables=True)
  g(p, jnp.ones(3))
  np.testing.assert_array_equal(p.value, [2.0, 2.0, 2.0])
  assert old.is_deleted()
  x = jnp.ones(3)
  h = pz.variable_jit(f, donate_variables=True, donate_argnames="x")
  h(p, x)
  assert x.is_deleted()
  np.testing.assert_array_equal(p.value, [3.0, 3.0, 3.0])


def test_variable_jit_donation_with_donate_argnums():
  p = _param("p", jnp.ones(2))
  old = p.value

  def f(x, param):
    param.value = param.value + x
    return x + 1

  g = pz.variable_jit(f, donate_variables=True, donate_argnums=0)
  x = jnp.ones(2)
  out = g(x, param=p)
  assert x.is_deleted() and old.is_deleted()
  np.testing.assert_array_equal(out, [2.0, 2.0])
  np.testing.assert_array_equal(p.value, [2.0, 2.0])
  y = jnp.ones(2)
  g(x=y, param=p)  # donated by keyword too, as with plain jax.jit
  assert y.is_deleted()


def test_variable_jit_without_donation_keeps_buffers():
  p = _param("p", jnp.ones(2))
  old = p.value

  def f(param):
    param.value = param.value * 3

  pz.variable_jit(f)(p)
  assert not old.is_deleted()
  np.testing.assert_array_equal(p.value, [3.0, 3.0])


def test_variable_jit_out_shardings():
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  s = pz.StateVariable(1.0, label="s")

  def f(state):
    state.value = state.value * 2
    return {"out": state.value}

  out = pz.variable_jit(f, out_shardings=sharding)(s)
  assert float(out["out"]) == 2.0 and float(s.value) == 2.0


def test_variable_jit_with_var_kwargs_function():
  s = pz.StateVariable(0, label="s")

  def f(*args, **kwargs):
    kwargs["state"].value = kwargs["state"].value + len(args)
    return 0

  pz.variable_jit(f)(1, 2, state=s)
  assert int(s.value) == 2


def test_variable_jit_rejects_returned_variables():
  p = _param("p")
  with pytest.raises(
      ValueError,
      match=re.escape(
          "Returning a variable from a function transformed by pz.variable_jit"
          " is not allowed."
      ) + "(.|\n)*Found variables: ",
  ):
    pz.variable_jit(lambda x: x)(p)


def test_variable_jit_conflicts_and_metadata():
  def f(a, b):
    """Docs."""
    return a.value + b.value

  g = pz.variable_jit(f)
  assert g.__name__ == "f"
  assert g.__doc__ == "Variable-aware JIT-compiled version of f:\nDocs."
  with pytest.raises(pz.VariableConflictError):
    g(_param("p"), _param("p"))
  shared = _param("p", 2.0)
  assert float(g(shared, shared)) == 4.0
