"""Tests for `pz.nx.nmap`: vectorization rules, errors and JAX transforms."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from penzai import pz

nx = pz.nx


def _arange(*shape: int) -> np.ndarray:
  return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


def test_nmap_vectorizes_over_names_and_sees_positional_shape():
  seen = []

  def fun(x, y):
    seen.append((x.shape, y.shape, isinstance(x, jax.core.Tracer)))
    return jnp.dot(x, y)

  x = nx.wrap(_arange(2, 3), "batch", "f")
  w = nx.wrap(_arange(3, 4), "f", "out")
  result = nx.nmap(fun)(x.untag("f"), w.untag("f"))
  assert seen[-1] == ((3,), (3,), True)
  assert result.named_shape == {"batch": 2, "out": 4}
  assert isinstance(result, nx.NamedArray)
  np.testing.assert_allclose(
      result.unwrap("batch", "out"), _arange(2, 3) @ _arange(3, 4)
  )


def test_nmap_without_names_calls_fun_on_concrete_arrays():
  seen = []

  def fun(x):
    seen.append(x)
    return x * 2

  result = nx.nmap(fun)(nx.wrap(jnp.arange(3)))
  assert not isinstance(seen[0], jax.core.Tracer)
  assert isinstance(result, nx.NamedArrayView)
  assert result.data_axis_for_logical_axis == (0,)
  assert result.data_axis_for_name == {}
  scalar = nx.nmap(jnp.sum)(nx.wrap(jnp.arange(3)))
  assert isinstance(scalar, nx.NamedArray) and scalar.named_axes == {}


def test_nmap_output_layout_follows_union_of_names():
  x = nx.wrap(_arange(2, 3, 4), "i", "j", "k").untag("j")
  y = nx.wrap(_arange(5, 2), "m", "i")
  out = nx.nmap(lambda a, b: a[:, None] * b)(x, y)
  assert isinstance(out, nx.NamedArrayView)
  assert out.data_axis_for_name == {"i": 0, "k": 1, "m": 2}
  assert out.data_axis_for_logical_axis == (3, 4)
  assert out.data_shape == (2, 4, 5, 3, 1)


def test_nmap_passes_non_named_leaves_unchanged():
  seen = {}

  def fun(x, n, *, shape, label):
    seen.update(n=n, shape=shape, label=label)
    return jnp.reshape(x, shape) + n

  x = nx.wrap(_arange(2, 6)).tag_prefix("b")
  out = nx.nmap(fun)(x, 1, shape=(2, 3), label="s")
  assert seen == {"n": 1, "shape": (2, 3), "label": "s"}
  assert out.positional_shape == (2, 3)
  assert out.named_shape == {"b": 2}


def test_nmap_pytree_outputs_and_none():
  x = nx.wrap(_arange(2, 3), "a", "b")
  out = nx.nmap(lambda v: {"sum": v.sum(), "none": None, "const": 3})(
      x.untag("b")
  )
  assert out["none"] is None
  assert out["const"].named_shape == {"a": 2}
  np.testing.assert_array_equal(out["const"].unwrap("a"), [3, 3])
  np.testing.assert_array_equal(out["sum"].unwrap("a"), [3.0, 12.0])
  with pytest.raises(TypeError):
    nx.nmap(lambda v: "text")(x)


def test_nmap_inconsistent_names_error_message():
  x = nx.wrap(jnp.ones((2, 3)), "a", "b")
  y = nx.wrap(jnp.ones((4,)), "a")

  def add(p, q):
    return p + q

  expected = "\n".join([
      f"Inconsistent named axes in a call to nmap({add}) for axes ['a']:",
      "  args[0].named_shape == {'a': 2, 'b': 3}",
      "  args[1]['k'].named_shape == {'a': 4}",
      "  kwargs['z'].named_shape == {'a': 2, 'b': 3}",
  ])
  with pytest.raises(ValueError, match="^" + re.escape(expected) + "$"):
    nx.nmap(add)(x, {"k": y}, z=x)


def test_nmap_wrapper_metadata():
  def documented(x):
    """Doubles."""
    return x * 2

  wrapped = nx.nmap(documented)
  assert wrapped.__name__ == "documented"
  assert wrapped.__wrapped__ is documented
  assert wrapped.__doc__ == (
      "Name-vectorized version of `documented`. Takes similar arguments as"
      " `documented` but accepts and returns NamedArrays (or NamedArrayViews)"
      " in place of regular arrays.\n\nOriginal documentation:\n\nDoubles."
  )
  assert "Original documentation" not in nx.nmap(lambda x: x).__doc__


def test_nmap_collectives_use_axis_names():
  x = nx.wrap(_arange(2, 3), "a", "b")
  normalized = nx.nmap(lambda v: v - jax.lax.pmean(v, "b"))(x)
  np.testing.assert_allclose(
      normalized.unwrap("a", "b"),
      _arange(2, 3) - _arange(2, 3).mean(1, keepdims=True),
  )


def test_nmap_norm_example_from_reference():
  x = nx.wrap(_arange(2, 3), "a", "feature")
  norms = nx.nmap(jnp.linalg.norm)(x.untag("feature"))
  np.testing.assert_allclose(
      norms.unwrap("a"), np.linalg.norm(_arange(2, 3), axis=1), rtol=1e-6
  )


@pytest.fixture(name="compile_early")
def _compile_early(monkeypatch):
  """Makes nmap switch to its compiled path after two eager calls."""
  monkeypatch.setattr(nx, "_NMAP_EAGER_CALLS_BEFORE_JIT", 2)


@pytest.mark.usefixtures("compile_early")
def test_repeated_calls_reuse_and_respect_closures():
  x = nx.wrap(_arange(2, 3), "a", "b")
  for scale in (1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0):
    out = nx.nmap(lambda v, s=scale: v * s)(x)
    np.testing.assert_allclose(out.unwrap("a", "b"), _arange(2, 3) * scale)
  for offset in (1.0, 5.0, 5.0, 5.0, 5.0, 7.0, 7.0, 7.0):
    out = nx.nmap(lambda v: v + offset)(x)  # pylint: disable=cell-var-from-loop
    np.testing.assert_allclose(out.unwrap("a", "b"), _arange(2, 3) + offset)
  nx._nmap_cache.clear()
  for _ in range(4):
    y = x.untag("b").sum()
  np.testing.assert_allclose(y.unwrap("a"), _arange(2, 3).sum(1))
  # The last calls ran through the compiled path.
  assert [entry[1] is not None for entry in nx._nmap_cache.values()] == [True]


@pytest.mark.usefixtures("compile_early")
def test_repeated_calls_respect_mutable_closed_over_state():
  class Holder:
    scale = 1.0

  holder = Holder()
  x = nx.wrap(_arange(2, 3), "a", "b")
  for scale in (1.0, 1.0, 1.0, 1.0, 6.0, 6.0):
    holder.scale = scale
    out = nx.nmap(lambda v: v * holder.scale)(x)
    np.testing.assert_allclose(out.unwrap("a", "b"), _arange(2, 3) * scale)


_GLOBAL_SCALE = 1.0


def _scale_by_global(v):
  return v * _GLOBAL_SCALE


@pytest.mark.usefixtures("compile_early")
def test_repeated_calls_respect_changed_globals():
  global _GLOBAL_SCALE
  x = nx.wrap(_arange(2, 3), "a", "b")
  try:
    for scale in (1.0, 1.0, 1.0, 1.0, 4.0, 4.0):
      _GLOBAL_SCALE = scale
      out = nx.nmap(_scale_by_global)(x)
      np.testing.assert_allclose(out.unwrap("a", "b"), _arange(2, 3) * scale)
  finally:
    _GLOBAL_SCALE = 1.0


def test_nmap_under_jit_grad_vmap():
  x = nx.wrap(_arange(2, 3), "a", "b")

  @jax.jit
  def f(arr):
    return nx.nmap(jnp.sum)(arr.untag("b")) * 2

  out = f(x)
  np.testing.assert_allclose(out.unwrap("a"), _arange(2, 3).sum(1) * 2)

  def loss(arr):
    return nx.nmap(jnp.sum)((arr * arr).untag("a", "b")).unwrap()

  grads = jax.grad(loss)(x)
  assert isinstance(grads, nx.NamedArray)
  np.testing.assert_allclose(grads.unwrap("a", "b"), 2 * _arange(2, 3))

  a_leading = x.untag("a").with_positional_prefix()
  batched = jax.vmap(lambda arr: (arr + 1).untag("b").sum())(a_leading)
  assert isinstance(batched, nx.NamedArray)
  assert batched.named_shape == {} and batched.positional_shape == (2,)
  np.testing.assert_allclose(batched.unwrap(), (_arange(2, 3) + 1).sum(1))


def test_nmap_under_lax_scan():
  xs = nx.wrap(_arange(4, 3), "t", "f").untag_prefix("t").with_positional_prefix()

  def step(carry, x):
    new = carry + x
    return new, nx.nmap(jnp.max)(new.untag("f"))

  carry, ys = jax.lax.scan(step, nx.zeros({"f": 3}), xs)
  np.testing.assert_allclose(carry.unwrap("f"), _arange(4, 3).sum(0))
  np.testing.assert_allclose(
      ys.data_array, np.cumsum(_arange(4, 3), 0).max(1)
  )


_SIZES = {"a": 2, "b": 3, "c": 4}


@settings(max_examples=6)
@given(data=st.data())
def test_nmap_agrees_with_nested_vmap(data):
  x_names = data.draw(st.permutations(["a", "b", "c"]))
  y_names = data.draw(st.sampled_from([["b"], ["c", "a"], ["a", "b", "c"]]))
  x_raw = _arange(*[_SIZES[n] for n in x_names], 2)
  y_raw = _arange(*[_SIZES[n] for n in y_names], 2)
  x = nx.wrap(x_raw, *x_names, "p").untag("p")
  y = nx.wrap(y_raw, *y_names, "p").untag("p")
  result = nx.nmap(jnp.dot)(x, y)

  def canonical(raw, names):
    return np.transpose(raw, [names.index(n) for n in "abc" if n in names] + [len(names)])

  xc = canonical(x_raw, x_names)
  yc = canonical(y_raw, y_names)
  y_axes = {n: i for i, n in enumerate(n for n in "abc" if n in y_names)}
  # Reference: nested vmaps over a, b, c in that order.
  f = jnp.dot
  for name in reversed("abc"):
    y_axis = 0 if name in y_axes else None
    f = jax.vmap(f, in_axes=(0, y_axis))
  reference = f(xc, yc)
  np.testing.assert_allclose(result.unwrap("a", "b", "c"), reference, rtol=1e-5)
  assert list(result.named_shape) == list(dict.fromkeys([*x_names, *y_names]))


@settings(max_examples=4)
@given(data=st.data())
def test_operators_match_nmap_of_operator_exactly(data):
  x_names = data.draw(st.permutations(["a", "b"]))
  x_untag = data.draw(st.sampled_from([(), ("a",), ("b", "a")]))
  y_names = data.draw(st.sampled_from([["b"], ["c", "a"], []]))
  y_pos = data.draw(st.sampled_from([(), (2,), (1, 2)]))
  x = nx.wrap(_arange(*[_SIZES[n] for n in x_names], 2), *x_names, "p")
  x = x.untag("p") if not x_untag else x.untag(*x_untag, "p")
  y = nx.wrap(_arange(*[_SIZES[n] for n in y_names], *y_pos) + 1.0)
  y = y.tag_prefix(*y_names)
  structure = jax.tree_util.tree_structure

  def check_same(fast, slow):
    assert structure(fast) == structure(slow)
    np.testing.assert_allclose(fast.data_array, slow.data_array)

  for other in (y, 2.0, jnp.ones((3, 1, 2))):
    if isinstance(other, jax.Array) and x.positional_shape != (2,):
      continue
    check_same(x * other, nx.nmap(lambda p, q: p * q)(x, other))
    if nx.is_namedarray(other):
      check_same(other - x, nx.nmap(lambda p, q: p - q)(other, x))
    else:
      check_same(other - x, nx.nmap(lambda p, q: q - p)(x, other))
  check_same(-x, nx.nmap(lambda p: -p)(x))


def test_nmap_puts_logical_axes_in_order_inside_fun():
  raw = _arange(2, 3, 4)
  x = nx.wrap(raw, "a", "b", "c").untag("c", "a")
  seen = []

  def fun(v):
    seen.append(v.shape)
    return v

  out = nx.nmap(fun)(x)
  assert seen == [(4, 2)]
  assert out.positional_shape == (4, 2)
  np.testing.assert_array_equal(
      out.untag_prefix("b").unwrap(), np.transpose(raw, (1, 2, 0))
  )


@pytest.mark.usefixtures("compile_early")
def test_repeated_calls_distinguish_argument_positions():
  x = nx.wrap(_arange(2), "a")
  fun = lambda p, q: p - 2 * q  # pylint: disable=unnecessary-lambda-assignment
  for _ in range(4):
    left = nx.nmap(fun)(x, 1.0)
    right = nx.nmap(fun)(1.0, x)
  np.testing.assert_allclose(left.unwrap("a"), _arange(2) - 2.0)
  np.testing.assert_allclose(right.unwrap("a"), 1.0 - 2 * _arange(2))
