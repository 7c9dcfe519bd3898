"""Tests for penzai.core.shapecheck (pz.chk): patterns, solving, error reports."""

import collections

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz

chk = pz.chk
var = chk.var
ArraySpec = chk.ArraySpec
KNOWN = "the known variable assignments (argument `known_vars` to check_structure)"


def sds(*shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(shape, dtype)


def named_spec(named, shape=(), dtype=np.float32):
  """An ArraySpec used as a *value* with a given named shape."""
  return ArraySpec(shape=shape, named_shape=named, dtype=dtype)


def mismatch(value, pattern, **kwargs) -> str:
  with pytest.raises(chk.StructureMismatchError) as info:
    chk.check_structure(value, pattern, **kwargs)
  return str(info.value)


# --- pattern building blocks -----------------------------------------------


def test_dimvar_unpacks_into_multidimvars():
  assert (*var("x"),) == (chk.MultiDimVar("x"),)
  assert tuple(var("x")) == (chk.MultiDimVar("x"),)
  assert {**var("x")} == {chk.MultiDimVar("x"): chk.RemainingAxisPlaceholder()}
  assert dict(var("x")) == {**var("x")}
  assert len(var("x")) == 1
  assert "a" in var("x")
  assert var("x") != {chk.MultiDimVar("x"): chk.RemainingAxisPlaceholder()}


def test_dimvar_indexing():
  assert var("x")["a"] == chk.DimVar(("x", "a"))
  assert var("x")[0] == chk.DimVar(("x", 0))
  with pytest.raises(KeyError, match="Cannot get key 1.5 from a DimVar"):
    var("x")[1.5]
  with pytest.raises(TypeError, match="Cannot index a tuple-named DimVar"):
    var("x")["a"]["b"]
  with pytest.raises(TypeError, match="Cannot iterate over a tuple-named DimVar"):
    tuple(var("x")["a"])


def test_var_requires_string_name():
  with pytest.raises(TypeError, match="Variable names must be strings. Got 3"):
    var(3)


def test_dimvars_are_hashable_and_ordered():
  assert sorted([var("b"), var("a")]) == [var("a"), var("b")]
  assert len({var("a"), var("a"), chk.MultiDimVar("a")}) == 2
  with pytest.raises(TypeError):
    sorted([var("a"), var("a")["x"]])


def test_wildcard_and_placeholder_equality():
  assert chk.Wildcard() == chk.ANY
  assert chk.Wildcard("x") != chk.ANY
  assert chk.RemainingAxisPlaceholder() == chk.RemainingAxisPlaceholder()
  assert repr(chk.RemainingAxisPlaceholder()) == "RemainingAxisPlaceholder()"
  assert jax.tree_util.tree_leaves(chk.Wildcard("d")) == []


def test_vars_for_axes():
  assert chk.vars_for_axes("h", {"heads": 4, "dim": None}) == {
      "heads": chk.KnownDim(("h", "heads"), 4),
      "dim": chk.DimVar(("h", "dim")),
  }
  assert list(chk.vars_for_axes("h", ["b", "a"])) == ["b", "a"]
  assert chk.vars_for_axes("h", ["a"]) == {"a": var("h")["a"]}


# --- ArraySpec ----------------------------------------------------------------


def test_arrayspec_defaults_and_fields():
  spec = ArraySpec()
  assert spec.shape == () and spec.dtype is np.generic and spec.named_shape == {}
  assert spec.positional_shape == ()
  assert jax.tree_util.tree_leaves(ArraySpec(shape=(1, 2))) == []
  spec = ArraySpec.floating_named({"a": 3})
  assert spec == ArraySpec(named_shape={"a": 3}, dtype=np.floating)


def test_arrayspec_into_pytree():
  out = ArraySpec(shape=(2, 3), dtype=jnp.int32).into_pytree()
  assert out == jax.ShapeDtypeStruct((2, 3), jnp.int32)
  out = ArraySpec(shape=(chk.KnownDim("n", 4),), dtype=jnp.float32).into_pytree()
  assert out.shape == (4,)
  for bad in [
      ArraySpec(shape=(var("n"),), dtype=jnp.float32),
      ArraySpec(shape=(*var("n"),), dtype=jnp.float32),
      ArraySpec(named_shape={"a": var("n")}, dtype=jnp.float32),
      ArraySpec(named_shape={**var("n")}, dtype=jnp.float32),
  ]:
    with pytest.raises(
        ValueError,
        match="Cannot use `into_pytree` on an ArraySpec with variable",
    ):
      bad.into_pytree()
  with pytest.raises(TypeError):  # np.generic is not a concrete dtype
    ArraySpec(shape=(2,)).into_pytree()


def test_arrayspec_into_pytree_named():
  out = ArraySpec(shape=(2,), named_shape={"a": 3}, dtype=jnp.float32).into_pytree()
  assert isinstance(out, pz.nx.NamedArray)
  assert out.named_axes == collections.OrderedDict({"a": 3})
  assert out.data_array == jax.ShapeDtypeStruct((2, 3), jnp.float32)


# --- check_structure: successful matches --------------------------------------


def test_solves_variables_across_tree():
  result = chk.check_structure(
      {"a": jnp.zeros((2, 3)), "b": jnp.zeros((3,), jnp.int32)},
      {
          "a": ArraySpec(shape=(var("n"), var("m")), dtype=np.floating),
          "b": ArraySpec(shape=(var("m"),), dtype=jnp.int32),
      },
  )
  assert dict(result) == {"n": 2, "m": 3}
  assert result.n == 2 and result["m"] == 3
  assert result["n", "m"] == (2, 3)
  assert len(result) == 2 and set(result) == {"n", "m"}
  assert result != {"n": 2, "m": 3}


def test_match_result_missing_names():
  result = chk.check_structure(sds(2), ArraySpec(shape=(var("n"),)))
  with pytest.raises(AttributeError) as info:
    result.missing
  assert info.value.name == "missing" and info.value.obj is result
  with pytest.raises(KeyError):
    result["missing"]
  assert repr(result) == "MatchResult(_bindings={'n': 2})"


def test_unpacked_positional_variables():
  result = chk.check_structure(
      [sds(4, 5, 3), sds(7, 4, 5)],
      [ArraySpec(shape=(*var("batch"), 3)), ArraySpec(shape=(7, *var("batch")))],
  )
  assert dict(result) == {"batch": (4, 5)}
  result = chk.check_structure(sds(3), ArraySpec(shape=(*var("b"), 3)))
  assert dict(result) == {"b": ()}


def test_shape_given_as_var_means_unpacked():
  result = chk.check_structure(
      named_spec({"a": 1, "b": 2}, shape=(3, 4)),
      ArraySpec(shape=var("g"), named_shape=var("z")),
  )
  assert dict(result) == {"g": (3, 4), "z": {"a": 1, "b": 2}}


def test_named_shapes_and_remaining_axes():
  result = chk.check_structure(
      named_spec({"a": 2, "b": 3, "c": 4}),
      ArraySpec(named_shape={"a": var("n"), **var("rest")}),
  )
  assert dict(result) == {"n": 2, "rest": {"b": 3, "c": 4}}


def test_vars_for_axes_are_grouped():
  result = chk.check_structure(
      named_spec({"heads": 4, "dim": 8, "batch": 2}),
      ArraySpec(
          named_shape={"batch": 2, **chk.vars_for_axes("h", {"heads": 4, "dim": None})}
      ),
  )
  assert dict(result) == {"h": {"heads": 4, "dim": 8}}


def test_component_variables_agree_with_whole():
  result = chk.check_structure(
      [sds(2, 3), sds(3)],
      [ArraySpec(shape=(*var("s"),)), ArraySpec(shape=(var("s")[1],))],
  )
  assert dict(result) == {"s": (2, 3)}


def test_iterative_solving_of_two_unpacks():
  result = chk.check_structure(
      [sds(2, 3), sds(3)],
      [ArraySpec(shape=(*var("a"), *var("b"))), ArraySpec(shape=(*var("b"),))],
  )
  assert dict(result) == {"b": (3,), "a": (2,)}


def test_wildcards_and_plain_leaves():
  result = chk.check_structure(
      {"x": "anything", "y": {"deep": [1, 2]}, "z": 5, "w": np.array([1, 2])},
      {"x": chk.ANY, "y": chk.Wildcard("sub"), "z": 5, "w": np.array([1, 2])},
  )
  assert dict(result) == {}


def test_known_vars_are_included():
  result = chk.check_structure(sds(2), ArraySpec(shape=(var("n"),)), known_vars={"k": 7})
  assert dict(result) == {"k": 7, "n": 2}
  again = chk.check_structure(sds(2, 5), ArraySpec(shape=(var("n"), 5)), known_vars=result)
  assert dict(again) == {"k": 7, "n": 2}


def test_dtype_rules():
  chk.check_structure(sds(2, dtype=jnp.float32), ArraySpec(shape=(2,), dtype=np.floating))
  chk.check_structure(sds(2, dtype=jnp.int8), ArraySpec(shape=(2,), dtype=np.integer))
  chk.check_structure(sds(2, dtype=jnp.float32), ArraySpec(shape=(2,), dtype="float32"))
  chk.check_structure(
      np.zeros((2,), np.float64), ArraySpec(shape=(2,), dtype=jnp.float32)
  )
  chk.check_structure(1.0, ArraySpec(dtype=np.floating))
  chk.check_structure(np.int32(3), ArraySpec(dtype=np.integer))


# --- check_structure: error reports ---------------------------------------------


def test_report_dim_mismatch():
  assert mismatch({"a": sds(2, 3)}, {"a": ArraySpec(shape=(var("n"), 4))}) == (
      "Mismatch while checking structures:\n"
      "At root['a']: Positional shape mismatch between value (2, 3) and"
      " pattern (var('n'), 4):\n"
      "  Dim 1: Actual size 3 does not match expected 4"
  )


def test_report_previous_size():
  assert mismatch(
      [sds(2), sds(3)], [ArraySpec(shape=(var("n"),)), ArraySpec(shape=(var("n"),))]
  ) == (
      "Mismatch while checking structures:\n"
      "At root[1]: Positional shape mismatch between value (3,) and pattern"
      " (var('n'),):\n"
      "  Dim 0: Size 3 does not match previous size 2 for var('n') from root[0]"
  )


def test_report_known_vars_source_and_prefix():
  assert mismatch(
      sds(2), ArraySpec(shape=(var("n"),)), known_vars={"n": 3}, error_prefix="In foo: "
  ) == (
      "In foo: Mismatch while checking structures:\n"
      "At root: Positional shape mismatch between value (2,) and pattern"
      " (var('n'),):\n"
      f"  Dim 0: Size 2 does not match previous size 3 for var('n') from {KNOWN}"
  )


def test_report_lengths():
  assert mismatch(sds(2, 3), ArraySpec(shape=(var("n"),))) == (
      "Mismatch while checking structures:\n"
      "At root: Positional shape (2, 3) had different length than pattern"
      " (var('n'),)"
  )
  assert mismatch(sds(2), ArraySpec(shape=(1, *var("b"), 2, 3))) == (
      "Mismatch while checking structures:\n"
      "At root: Positional shape (2,) was shorter than wildcard pattern"
      " (1, *var('b'), 2, 3)"
  )
  assert mismatch(sds(2), ArraySpec(shape=())) == (
      "Mismatch while checking structures:\n"
      "At root: Positional shape (2,) had different length than pattern ()"
  )


def test_report_after_inlining_positional():
  assert mismatch(
      [sds(2, 3), sds(4, 3)],
      [ArraySpec(shape=(*var("b"), 3)), ArraySpec(shape=(*var("b"), 5))],
  ) == (
      "Mismatch while checking structures:\n"
      "At root[1]: Positional shape mismatch between value (4, 3) and pattern"
      " (var('b')[0]:=2, 5):\n"
      "  Dim 0: Size 4 does not match previous size 2 for var('b')[0]:=2 from"
      " root[0]\n"
      "  Dim 1: Actual size 3 does not match expected 5\n"
      "  After inlining var('b') = (2,) from root[0]"
  )


def test_report_unpack_line():
  assert mismatch(
      [sds(2), sds(2)], [ArraySpec(shape=(var("b"),)), ArraySpec(shape=(*var("b"), 2))]
  ) == (
      "Mismatch while checking structures:\n"
      "At root[1]: Positional shape mismatch between value (2,) and pattern"
      " (*var('b'), 2):\n"
      "  Unpack pattern *var(b): Size () does not match previous size 2 for"
      " var('b') from root[0]"
  )


def test_report_dtypes_and_ordering():
  assert mismatch(
      {"a": sds(3), "b": 1, "c": sds(2, dtype=jnp.int32)},
      {
          "a": ArraySpec(shape=(5,), dtype=np.integer),
          "b": 2,
          "c": ArraySpec(shape=(2,), dtype=jnp.float32),
      },
  ) == (
      "Mismatch while checking structures:\n"
      "At root['a']: Value has the wrong dtype: expected a sub-dtype of"
      " <class 'numpy.integer'> but got dtype float32.\n"
      "At root['b']: Value 1 was not equal to the non-ArraySpec pattern 2.\n"
      "At root['c']: Value has the wrong dtype: expected dtype float32 but got"
      " dtype int32.\n"
      "At root['a']: Positional shape mismatch between value (3,) and pattern"
      " (5,):\n"
      "  Dim 0: Actual size 3 does not match expected 5"
  )


def test_report_non_arraylike():
  assert mismatch({"a": "hello"}, {"a": ArraySpec()}) == (
      "Mismatch while checking structures:\n"
      "At root['a']: Couldn't match an ArraySpec with a non-arraylike value hello"
  )


def test_report_plain_leaf_arrays():
  assert mismatch(np.array([1, 3]), np.array([1, 2])) == (
      "Mismatch while checking structures:\n"
      "At root: Value array([1, 3]) was not equal to the non-ArraySpec pattern"
      " array([1, 2])."
  )


def test_report_named_missing_and_unexpected():
  assert mismatch(named_spec({"a": 2}), ArraySpec(named_shape={"a": 2, "b": var("x")})) == (
      "Mismatch while checking structures:\n"
      "At root: Named shape mismatch between value {'a': 2} and pattern"
      " {'a': 2, 'b': var('x')}:\n"
      "  Axis 'b': Expected to be present but was missing"
  )
  assert mismatch(
      named_spec({"a": 2, "c": 1, "b": 3}), ArraySpec(named_shape={"a": 5})
  ) == (
      "Mismatch while checking structures:\n"
      "At root: Named shape mismatch between value {'a': 2, 'c': 1, 'b': 3} and"
      " pattern {'a': 5}:\n"
      "  Axis 'a': Actual size 2 does not match expected 5\n"
      "  Unexpected names in value's named shape: ['b', 'c']"
  )


def test_report_named_after_inlining():
  assert mismatch(
      [named_spec({"x": 1}), named_spec({"y": 2, "x": 5})],
      [ArraySpec(named_shape={**var("r")}), ArraySpec(named_shape={"y": 2, **var("r")})],
  ) == (
      "Mismatch while checking structures:\n"
      "At root[1]: Named shape mismatch between value {'y': 2, 'x': 5} and"
      " pattern {'y': 2, 'x': var('r')['x']:=1}:\n"
      "  Axis 'x': Size 5 does not match previous size 1 for var('r')['x']:=1"
      " from root[0]\n"
      "  After inlining var('r') = {'x': 1} from root[0]"
  )


def test_report_named_key_conflict():
  assert mismatch(
      [named_spec({"b": 3}), named_spec({"b": 3})],
      [ArraySpec(named_shape={**var("rest")}), ArraySpec(named_shape={"b": 3, **var("rest")})],
  ) == (
      "Mismatch while checking structures:\n"
      "At root[1]: Key conflict while substituting unpacked variable"
      " var('rest') for known named sub-shape {'b': 3} from root[0]: name b is"
      " already present in the shape {'b': 3, **var('rest')}."
  )


def test_report_named_unpack_line():
  assert mismatch(
      [named_spec({"a": 1}), named_spec({"b": 3})],
      [ArraySpec(named_shape={"a": var("q")}), ArraySpec(named_shape={**var("q")})],
  ) == (
      "Mismatch while checking structures:\n"
      "At root[1]: Named shape mismatch between value {'b': 3} and pattern"
      " {**var('q')}:\n"
      "  Unpack pattern **MultiDimVar(name='q'): Size {'b': 3} does not match"
      " previous size 1 for var('q') from root[0]"
  )


def test_report_unsolvable():
  assert mismatch(sds(2, 3), ArraySpec(shape=(*var("b"), *var("a")))) == (
      "Could not solve for all variable constraints. This usually means the"
      " variable assignment is ambiguous because multiple unpack patterns"
      " (*var(...) or **var(...)) appeared in the same positional or named"
      " shape.\n"
      "Unsolvable variables: var('a'), var('b')\n"
      "Unsolvable constraints:\n"
      "  (2, 3) == (*var('b'), *var('a')) from root"
  )


def test_report_remaining_unsolved_note():
  assert mismatch(
      [sds(2, 3), sds(3)],
      [ArraySpec(shape=(*var("a"), *var("b"))), ArraySpec(shape=(4,))],
  ) == (
      "Mismatch while checking structures:\n"
      "At root[1]: Positional shape mismatch between value (3,) and pattern"
      " (4,):\n"
      "  Dim 0: Actual size 3 does not match expected 4\n"
      "There may also be additional mismatches due to remaining unsolved"
      " constraints."
  )


def test_report_conflicting_assignments():
  assert mismatch(
      [sds(2, 3), sds(5)],
      [ArraySpec(shape=(*var("s"),)), ArraySpec(shape=(var("s")[0],))],
  ) == (
      "Unexpected conflicts between variable assignments:\n"
      "  var('s'): Solved as (2, 3) from root[0] but separately solved"
      " var('s')[0] as 5 from root[1]"
  )


def test_structure_errors_come_from_jax():
  with pytest.raises(ValueError) as info:
    chk.check_structure([1], [1, 2])
  assert not isinstance(info.value, chk.StructureMismatchError)


# --- substitution helpers ---------------------------------------------------------


def _structure_with_vars():
  return {
      "x": ArraySpec(
          shape=(var("n"), *var("b"), chk.KnownDim("k", 7)),
          named_shape={"a": var("m"), **var("r")},
          dtype=np.floating,
      ),
      "y": "not a spec",
  }


def test_get_dimension_variables():
  sub = chk.get_dimension_variables(_structure_with_vars())
  assert sub.size_variables == {"n": var("n"), "m": var("m")}
  assert sub.sequence_variables == {"b": (chk.MultiDimVar("b"),)}
  assert sub.mapping_variables == {
      "r": {chk.MultiDimVar("r"): chk.RemainingAxisPlaceholder()}
  }
  assert not sub.is_empty()
  assert chk.get_dimension_variables([ArraySpec(shape=(1,))]).is_empty()


def test_substitute_identity_except_knowndims():
  structure = _structure_with_vars()
  sub = chk.get_dimension_variables(structure)
  out = chk.full_substitute_dimension_variables(structure, sub)
  assert out["y"] == "not a spec"
  assert out["x"] == ArraySpec(
      shape=(var("n"), *var("b"), 7),
      named_shape={"a": var("m"), **var("r")},
      dtype=np.floating,
  )


def test_substitute_values():
  sub = chk.DimensionVariableSubstitution(
      size_variables={"n": 2, "m": 3},
      sequence_variables={"b": (4, 5)},
      mapping_variables={"r": {"c": 6, "d": 1}},
  )
  out = chk.full_substitute_dimension_variables(_structure_with_vars(), sub)
  assert out["x"] == ArraySpec(
      shape=(2, 4, 5, 7), named_shape={"a": 3, "c": 6, "d": 1}, dtype=np.floating
  )
  assert list(out["x"].named_shape) == ["a", "c", "d"]


def test_substitute_errors():
  sub = chk.DimensionVariableSubstitution(
      size_variables={"n": 2, "m": 3},
      sequence_variables={"b": ()},
      mapping_variables={"r": {"a": 1}},
  )
  with pytest.raises(
      ValueError,
      match=(
          r"Key conflict while substituting mapping variable var\('r'\) at"
          r" root\['x'\]: name a is already present"
      ),
  ):
    chk.full_substitute_dimension_variables(_structure_with_vars(), sub)
  with pytest.raises(KeyError):
    chk.full_substitute_dimension_variables(
        _structure_with_vars(), chk.DimensionVariableSubstitution({}, {}, {})
    )


def test_as_array_structure():
  out = chk.as_array_structure(
      {"a": jnp.zeros((2,), jnp.int32), "b": "s", "c": 1.0, "d": ArraySpec(shape=(9,))}
  )
  assert out == {
      "a": ArraySpec(shape=(2,), dtype=np.dtype("int32")),
      "b": chk.ANY,
      "c": ArraySpec(shape=(), dtype=np.dtype("float32")),
      "d": ArraySpec(shape=(9,)),
  }


# --- properties -----------------------------------------------------------------

shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)


@hypothesis.given(shapes, st.integers(0, 4))
def test_unpack_split_recovers_shape(shape, split):
  split = min(split, len(shape))
  pattern = ArraySpec(
      shape=(*var("head"), *[var(f"d{i}") for i in range(split, len(shape))])
  )
  result = chk.check_structure(sds(*shape), pattern)
  assert result["head"] == shape[:split]
  for i in range(split, len(shape)):
    assert result[f"d{i}"] == shape[i]


@hypothesis.given(st.lists(shapes, min_size=1, max_size=3))
def test_eval_shape_matches_own_structure(shape_list):
  def fn(*xs):
    return [x * 2 for x in xs]

  args = [sds(*s) for s in shape_list]
  out = jax.eval_shape(fn, *args)
  structure = chk.as_array_structure(args)
  assert dict(chk.check_structure(out, structure)) == {}
  sub = chk.get_dimension_variables(structure)
  assert chk.full_substitute_dimension_variables(structure, sub) == structure


# --- named arrays ------------------------------------------------------------------


def test_named_arrays_match_named_specs():
  arr = pz.nx.zeros({"batch": 2, "features": 3})
  view = pz.nx.wrap(jnp.zeros((4, 5), jnp.int32)).tag("a", "b").untag("b")
  result = chk.check_structure(
      {"x": arr, "v": view},
      {
          "x": ArraySpec(named_shape={"batch": var("b"), **var("rest")}, dtype=np.floating),
          "v": ArraySpec(shape=(var("n"),), named_shape={"a": 4}, dtype=jnp.int32),
      },
  )
  assert dict(result) == {"b": 2, "rest": {"features": 3}, "n": 5}


def test_named_array_report():
  arr = pz.nx.zeros({"batch": 2})
  assert mismatch(arr, ArraySpec(named_shape={"batch": 3, "seq": var("s")})) == (
      "Mismatch while checking structures:\n"
      "At root: Named shape mismatch between value {'batch': 2} and pattern"
      " {'batch': 3, 'seq': var('s')}:\n"
      "  Axis 'batch': Actual size 2 does not match expected 3\n"
      "  Axis 'seq': Expected to be present but was missing"
  )


def test_invalid_named_array_is_rejected():
  bad = pz.nx.NamedArray(
      named_axes=collections.OrderedDict({"a": 3}), data_array=jnp.zeros((2,))
  )
  with pytest.raises(ValueError):
    chk.check_structure(bad, ArraySpec(named_shape={"a": 3}))


def test_as_array_structure_keeps_named_arrays_whole():
  arr = pz.nx.wrap(jnp.zeros((2, 3), jnp.float32)).tag_prefix("a")
  out = chk.as_array_structure([arr])
  assert out == [
      ArraySpec(shape=(3,), named_shape={"a": 2}, dtype=np.dtype("float32"))
  ]
  assert dict(chk.check_structure([arr], out)) == {}


named_shapes = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 4), max_size=4
)


@hypothesis.given(named_shapes, st.sets(st.sampled_from(["a", "b", "c", "d"])))
def test_named_split_and_known_vars_roundtrip(named, explicit):
  explicit = [k for k in named if k in explicit]
  pattern = ArraySpec(
      named_shape={**{k: var(f"v_{k}") for k in explicit}, **var("rest")}
  )
  value = named_spec(named)
  result = chk.check_structure(value, pattern)
  assert result["rest"] == {k: v for k, v in named.items() if k not in explicit}
  for k in explicit:
    assert result[f"v_{k}"] == named[k]
  again = chk.check_structure(value, pattern, known_vars=result)
  assert dict(again) == dict(result)
