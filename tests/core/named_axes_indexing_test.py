"""Tests for indexing named arrays (`arr[...]`) and `arr.at[...]` updates."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz

nx = pz.nx

_DATA = np.arange(12, dtype=np.float32).reshape(3, 4)


def _positional():
  """`pos`: positional axis of size 4, named axis "n" of size 3."""
  return nx.wrap(_DATA, "n", "pos").untag("pos")


# ---------------------------------------------------------- positional style


def test_positional_int_slice_none_ellipsis():
  arr = _positional()
  first = arr[0]
  assert isinstance(first, nx.NamedArray)
  np.testing.assert_array_equal(first.unwrap("n"), _DATA[:, 0])
  np.testing.assert_array_equal(arr[-1].unwrap("n"), _DATA[:, -1])
  sliced = arr[1:3]
  assert isinstance(sliced, nx.NamedArrayView)
  assert sliced.positional_shape == (2,)
  np.testing.assert_array_equal(sliced.untag_prefix("n").unwrap(), _DATA[:, 1:3])
  expanded = arr[None, ...]
  assert expanded.positional_shape == (1, 4)
  same = arr[()]
  np.testing.assert_array_equal(same.untag_prefix("n").unwrap(), _DATA)


def test_positional_out_of_range_int_is_clamped():
  arr = _positional()
  np.testing.assert_array_equal(arr[7].unwrap("n"), _DATA[:, 3])


def test_positional_concrete_jax_scalar_slice_bounds():
  arr = _positional()
  out = arr[jnp.array(1) : jnp.array(3)]
  assert out.positional_shape == (2,)


def test_positional_array_and_named_index():
  arr = _positional()
  picked = arr[jnp.array([3, 0])]
  assert picked.positional_shape == (2,)
  np.testing.assert_array_equal(picked.untag_prefix("n").unwrap(), _DATA[:, [3, 0]])
  index = nx.wrap(jnp.array([0, 2]), "k")
  by_name = arr[index]
  assert list(by_name.named_shape) == ["n", "k"]
  np.testing.assert_array_equal(by_name.unwrap("n", "k"), _DATA[:, [0, 2]])


def test_positional_index_on_array_without_positional_axes():
  arr = nx.wrap(_DATA, "n", "pos")
  with pytest.raises(IndexError, match="Too many indices"):
    arr[0]  # pylint: disable=pointless-statement
  np.testing.assert_array_equal(arr[()].unwrap("n", "pos"), _DATA)


def test_positional_get_kwargs_are_forwarded():
  arr = _positional()
  filled = arr.at[jnp.array([1, 9])].get(mode="fill", fill_value=-1.0)
  np.testing.assert_array_equal(
      filled.untag_prefix("n").unwrap()[:, 1], [-1.0, -1.0, -1.0]
  )


# ---------------------------------------------------------------- dict style


def test_dict_int_removes_axis_slice_keeps_name_none_introduces():
  arr = nx.wrap(_DATA, "n", "m")
  np.testing.assert_array_equal(arr[{"n": 1}].unwrap("m"), _DATA[1])
  sliced = arr[{"m": slice(1, 3)}]
  assert sliced.named_shape == {"n": 3, "m": 2}
  np.testing.assert_array_equal(sliced.unwrap("n", "m"), _DATA[:, 1:3])
  introduced = arr[{"new": None}]
  assert introduced.named_shape == {"n": 3, "m": 4, "new": 1}
  both = arr[{"new": None, "m": slice(0, 1), "n": 2}]
  assert both.named_shape == {"new": 1, "m": 1}
  np.testing.assert_array_equal(both.unwrap("new", "m"), [[8.0]])


def test_dict_integer_array_and_named_array_indices():
  arr = nx.wrap(_DATA, "n", "m")
  advanced = arr[{"m": jnp.array([0, 3])}]
  assert advanced.positional_shape == (2,)
  assert advanced.named_shape == {"n": 3}
  np.testing.assert_array_equal(advanced.untag_prefix("n").unwrap(), _DATA[:, [0, 3]])
  named_index = nx.wrap(jnp.array([2, 1]), "k")
  vectorized = arr[{"m": named_index}]
  assert vectorized.named_shape == {"n": 3, "k": 2}
  np.testing.assert_array_equal(vectorized.unwrap("n", "k"), _DATA[:, [2, 1]])
  np_index = arr[{"n": np.array([0])}]
  assert np_index.positional_shape == (1,)


def test_dict_index_keeps_existing_positional_axes():
  arr = _positional()
  out = arr[{"n": jnp.array([0, 2])}]
  assert out.positional_shape == (2, 4)
  np.testing.assert_array_equal(out.unwrap(), _DATA[[0, 2]])


@pytest.mark.parametrize(
    "bad",
    ["x", 1.5, np.int64(1), jnp.array([True, False, True]), jnp.array([0.5])],
)
def test_dict_index_rejects_unsupported_values(bad):
  arr = nx.wrap(_DATA, "n", "m")
  with pytest.raises(
      TypeError,
      match=re.escape(
          "Unsupported index for a named axis using dict-style index: expected"
          " a slice, an integer, an integer array, or None, but got"
      ),
  ):
    arr[{"n": bad}]  # pylint: disable=pointless-statement


def test_dict_index_name_errors():
  arr = nx.wrap(_DATA, "n", "m")
  with pytest.raises(ValueError, match=re.escape("{'zz'} are not present")):
    arr[{"zz": 0}]  # pylint: disable=pointless-statement
  with pytest.raises(ValueError, match="Repeated axis names"):
    arr[{"n": None}]  # pylint: disable=pointless-statement


# ------------------------------------------------------------------- updates


def test_positional_updates():
  arr = _positional()
  np.testing.assert_array_equal(
      arr.at[1].set(0.0).untag_prefix("n").unwrap()[:, 1], [0.0, 0.0, 0.0]
  )
  added = arr.at[0].add(nx.wrap(jnp.array([10.0, 20.0, 30.0]), "n"))
  np.testing.assert_array_equal(
      added.untag_prefix("n").unwrap()[:, 0], _DATA[:, 0] + [10, 20, 30]
  )
  grown = arr.at[0].set(nx.wrap(jnp.array([1.0, 2.0]), "extra"))
  assert grown.named_shape == {"n": 3, "extra": 2}
  assert grown.positional_shape == (4,)


@pytest.mark.parametrize(
    "method,reference",
    [
        ("set", lambda x: 2.0),
        ("add", lambda x: x + 2.0),
        ("multiply", lambda x: x * 2.0),
        ("mul", lambda x: x * 2.0),
        ("divide", lambda x: x / 2.0),
        ("power", lambda x: x**2.0),
        ("min", lambda x: np.minimum(x, 2.0)),
        ("max", lambda x: np.maximum(x, 2.0)),
    ],
)
def test_dict_update_methods(method, reference):
  arr = nx.wrap(_DATA, "n", "m")
  updated = getattr(arr.at[{"m": 1}], method)(2.0)
  assert updated.named_shape == {"n": 3, "m": 4}
  expected = _DATA.copy()
  expected[:, 1] = reference(_DATA[:, 1])
  np.testing.assert_allclose(updated.unwrap("n", "m"), expected)


def test_dict_update_with_sliced_name_and_positional_values():
  arr = nx.wrap(_DATA, "n", "m")
  values = nx.wrap(jnp.array([[1.0, 2.0]] * 3), "n", "m")
  updated = arr.at[{"m": slice(0, 2)}].set(values)
  expected = _DATA.copy()
  expected[:, 0:2] = [1.0, 2.0]
  np.testing.assert_array_equal(updated.unwrap("n", "m"), expected)
  multi = arr.at[{"m": jnp.array([0, 3])}].set(jnp.array([7.0, 8.0]))
  expected = _DATA.copy()
  expected[:, 0] = 7.0
  expected[:, 3] = 8.0
  np.testing.assert_array_equal(multi.unwrap("n", "m"), expected)


def test_dict_update_shape_error():
  arr = nx.wrap(_DATA, "n", "m")
  with pytest.raises(
      ValueError,
      match=re.escape(
          "Cannot provide updates with positional shape (3,) for an index whose"
          " result shape is (2,)! Update shape must be a suffix of the result"
          " shape (or broadcastable to it)."
      ),
  ):
    arr.at[{"m": jnp.array([0, 3])}].set(jnp.ones(3))


def test_non_functional_upstream_update_methods():
  arr = _positional()
  with pytest.raises(TypeError):
    arr.at[0].apply(jnp.sin)
  with pytest.raises(AttributeError, match="has no attribute 'div'"):
    arr.at[0].div(2.0)
  assert not hasattr(arr.at[0], "subtract")


def test_index_update_ref_repr_and_fields():
  arr = nx.wrap(_DATA, "foo", "m")
  ref = arr.at[{"foo": 1}]
  assert ref.indexer == {"foo": 1}
  assert ref.array is arr
  assert repr(ref).startswith("_IndexUpdateRef(array=")
  assert repr(ref).endswith("indexer={'foo': 1})")


def test_indexing_under_jit_and_grad():
  arr = nx.wrap(_DATA, "n", "m")

  @jax.jit
  def f(a, i):
    return a[{"n": i}].untag("m").sum()

  np.testing.assert_allclose(f(arr, 2).unwrap(), _DATA[2].sum())
  grad = jax.grad(lambda a: a[{"n": 0, "m": 1}].unwrap())(arr)
  expected = np.zeros_like(_DATA)
  expected[0, 1] = 1.0
  np.testing.assert_array_equal(grad.unwrap("n", "m"), expected)


@pytest.mark.parametrize(
    "indexer",
    [
        {"n": 1},
        {"m": slice(1, 3)},
        {"m": jnp.array([0, 3]), "n": slice(0, 2)},
        {"new": None, "n": jnp.array([[0], [2]])},
    ],
)
def test_dict_update_accepts_values_shaped_like_the_get_result(indexer):
  arr = nx.wrap(_DATA, "n", "m").untag("m").tag_prefix("m")
  got = arr[indexer]
  updated = arr.at[indexer].set(got * 0.0 - 1.0)
  assert updated.named_shape == arr.named_shape
  # Every element selected by the index is now -1; the rest is unchanged.
  marker = arr.at[indexer].set(-1.0).unwrap("n", "m")
  np.testing.assert_array_equal(updated.unwrap("n", "m"), marker)
  assert (marker == -1.0).any() and (marker != -1.0).any()


def test_repeated_indexing_does_not_recompile():
  arr = nx.wrap(_DATA, "n", "m")
  values = nx.wrap(jnp.ones(4), "m")

  def run(i):
    arr[{"n": i}].unwrap("m")
    arr.at[{"n": i}].add(values)
    arr.untag("m")[i]

  run(0)
  sizes = (
      nx._jitted_nmapped_getitem._cache_size(),
      nx._jitted_nmapped_update._cache_size(),
  )
  for i in range(1, 3):
    run(i)
  assert sizes == (
      nx._jitted_nmapped_getitem._cache_size(),
      nx._jitted_nmapped_update._cache_size(),
  )
