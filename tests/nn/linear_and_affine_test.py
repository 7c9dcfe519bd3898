"""Tests for penzai.nn.linear_and_affine (through pz.nn)."""

import functools

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.nn import linear_and_affine


def _normal(shape, seed=0):
  """Test data from numpy (no XLA compilation needed to make it)."""
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _linear(name="lin", key=0, **kwargs):
  return pz.nn.Linear.from_config(
      name=name,
      init_base_rng=None if key is None else jax.random.key(key),
      **kwargs,
  )


# ---------------------------------------------------------------------------
# Linear
# ---------------------------------------------------------------------------


def test_linear_structure_and_labels():
  layer = _linear(input_axes={"i": 3}, output_axes={"o": 4, "p": 2})
  assert type(layer) is pz.nn.Linear
  assert layer.weights.label == "lin.weights"
  assert layer.weights.metadata == {}
  assert layer.in_axis_names == ("i",)
  assert layer.out_axis_names == ("o", "p")
  assert layer.weights.value.named_shape == {"i": 3, "o": 4, "p": 2}
  assert layer.input_axes == {"i": 3}
  assert layer.output_axes == {"o": 4, "p": 2}
  assert layer.parallel_axes == {}
  leaves = jax.tree_util.tree_leaves(layer)
  assert leaves == [layer.weights]
  assert layer.treescope_color() == "#eba875"


def test_linear_matches_einsum():
  layer = _linear(
      input_axes={"i": 3, "j": 2},
      output_axes={"o": 4},
      parallel_axes={"h": 2},
  )
  assert layer.parallel_axes == {"h": 2}
  x_data = _normal((5, 2, 3, 2), 1)
  x = pz.nx.wrap(x_data, "batch", "h", "i", "j")
  w = layer.weights.value.unwrap("h", "i", "j", "o")
  expected = np.einsum("bhij,hijo->bho", x_data, np.asarray(w))
  result = layer(x, unused_side_input=3)
  assert set(result.named_shape) == {"batch", "h", "o"}
  np.testing.assert_allclose(
      result.unwrap("batch", "h", "o"), expected, rtol=1e-5, atol=1e-5
  )


def test_linear_parallel_broadcast_axes_are_outputs():
  layer = _linear(
      input_axes={"i": 3},
      output_axes={"o": 2},
      parallel_broadcast_axes={"heads": 4},
  )
  assert layer.out_axis_names == ("o", "heads")
  x = pz.nx.wrap(jnp.ones((3,)), "i")
  assert layer(x).named_shape == {"o": 2, "heads": 4}


def test_linear_input_errors_name_layer_and_axis():
  layer = _linear(name="blk/query", input_axes={"emb": 4}, output_axes={"o": 2})
  with pytest.raises(
      pz.chk.StructureMismatchError, match=r"^\(blk/query\) (.|\n)*'emb'"
  ):
    layer(pz.nx.wrap(jnp.ones((4,)), "features"))
  with pytest.raises(pz.chk.StructureMismatchError, match=r"\(blk/query\)"):
    layer(pz.nx.wrap(jnp.ones((5,)), "emb"))  # wrong size
  with pytest.raises(pz.chk.StructureMismatchError):
    layer(pz.nx.wrap(jnp.ones((4, 2)), "emb", "x").untag("x"))  # positional
  with pytest.raises(pz.chk.StructureMismatchError):
    layer(pz.nx.wrap(jnp.ones((4,), jnp.int32), "emb"))  # not floating
  with pytest.raises(pz.chk.StructureMismatchError, match="'o'"):
    layer(pz.nx.wrap(jnp.ones((4, 2)), "emb", "o"))  # output axis present


def test_linear_without_key_has_slot_and_raises_on_call():
  layer = _linear(key=None, input_axes={"i": 2}, output_axes={"o": 2})
  assert layer.weights == pz.ParameterSlot("lin.weights")
  with pytest.raises(pz.UnboundVariableError):
    layer(pz.nx.wrap(jnp.ones(2), "i"))


def test_linear_in_place_renaming():
  layer = _linear(input_axes={"emb": 3}, output_axes={"emb": 4, "x": 2})
  assert isinstance(layer, pz.nn.LinearInPlace)
  assert isinstance(layer, pz.nn.Sequential)
  inner, rename = layer.sublayers
  assert inner.weights.label == "lin.weights"
  assert inner.out_axis_names == ("emb_out", "x")
  assert rename == pz.nn.RenameAxes(old=("emb_out",), new=("emb",))
  out = layer(pz.nx.wrap(jnp.ones(3), "emb"))
  assert dict(out.named_shape) == {"emb": 4, "x": 2}
  assert layer.treescope_color() == (
      "#eba875",
      "color-mix(in oklab, #eba875 25%, white)",
  )


def test_linear_from_config_errors():
  with pytest.raises(ValueError, match="must not overlap"):
    _linear(
        input_axes={"a": 2},
        output_axes={"a": 2},
        rename_outputs_if_necessary=False,
    )
  with pytest.raises(ValueError, match="Tried to rename a to a_out"):
    _linear(input_axes={"a": 2, "a_out": 2}, output_axes={"a": 2})
  with pytest.raises(ValueError, match="parallel_axes"):
    _linear(input_axes={"a": 2}, output_axes={"b": 2}, parallel_axes={"a": 2})
  with pytest.raises(ValueError, match="parallel_axes"):
    _linear(
        input_axes={"a": 2},
        output_axes={"b": 2},
        parallel_axes={"c": 2},
        parallel_broadcast_axes={"c": 2},
    )


def test_same_name_and_key_give_same_parameters_regardless_of_order():
  def build(names):
    return {
        n: _linear(name=n, key=5, input_axes={"i": 3}, output_axes={"o": 2})
        for n in names
    }

  first = build(["x", "y"])
  second = build(["y", "x"])
  for n in ["x", "y"]:
    np.testing.assert_array_equal(
        first[n].weights.value.unwrap("i", "o"),
        second[n].weights.value.unwrap("i", "o"),
    )
  assert not np.array_equal(
      first["x"].weights.value.unwrap("i", "o"),
      first["y"].weights.value.unwrap("i", "o"),
  )


def test_parameter_sharing_and_gradients():
  layer = _linear(input_axes={"f": 3}, output_axes={"f": 3})
  weights = layer.sublayers[0].weights
  model = pz.nn.Sequential([layer, pz.nn.Elementwise(jnp.tanh), layer])
  unbound, params = pz.unbind_params(model)
  assert len(params) == 1 and params[0] is weights

  x_data = _normal((2, 3), 3)
  x = pz.nx.wrap(x_data, "b", "f")
  unbound, frozen = pz.unbind_params(model, freeze=True)

  def loss(frozen_params):
    out = pz.bind_variables(unbound, frozen_params)(x)
    return jnp.sum(out.unwrap("b", "f") ** 2)

  def reference_loss(w):
    h = jnp.tanh(x_data @ w)
    return jnp.sum((h @ w) ** 2)

  w = weights.value.unwrap("f", "f_out")
  grads = jax.grad(loss)(frozen)
  np.testing.assert_allclose(loss(frozen), reference_loss(w), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      grads[0].value.unwrap("f", "f_out"),
      jax.grad(reference_loss)(w),
      rtol=1e-4,
  )


_LINEARITY_LAYER = pz.freeze_params(
    _linear(key=0, input_axes={"i": 3}, output_axes={"o": 2})
)


@hypothesis.given(
    st.floats(-3, 3, allow_nan=False),
    st.lists(st.floats(-2, 2, allow_nan=False), min_size=12, max_size=12),
)
def test_linear_is_linear(alpha, values):
  frozen = _LINEARITY_LAYER
  data = np.asarray(values, dtype=np.float32).reshape(2, 2, 3)
  x = pz.nx.wrap(data[0], "b", "i")
  y = pz.nx.wrap(data[1], "b", "i")
  lhs = frozen(x * alpha + y).unwrap("b", "o")
  rhs = (frozen(x) * alpha + frozen(y)).unwrap("b", "o")
  np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# Affine, AddBias, ConstantRescale, RenameAxes
# ---------------------------------------------------------------------------


def test_affine_structure_and_formula():
  affine = pz.nn.Affine.from_config(
      name="mlp/Affine_0",
      init_base_rng=jax.random.key(0),
      input_axes={"features": 3},
      output_axes={"hidden": 4},
  )
  linear, add_bias = affine.sublayers
  assert linear.weights.label == "mlp/Affine_0/Linear.weights"
  assert add_bias.bias.label == "mlp/Affine_0/AddBias.bias"
  assert add_bias.new_axis_names == ()
  np.testing.assert_array_equal(add_bias.bias.value.unwrap("hidden"), 0.0)
  add_bias.bias.value = pz.nx.wrap(jnp.arange(4.0), "hidden")
  x_data = _normal((2, 3), 1)
  out = affine(pz.nx.wrap(x_data, "b", "features"))
  expected = x_data @ linear.weights.value.unwrap("features", "hidden") + (
      jnp.arange(4.0)
  )
  np.testing.assert_allclose(out.unwrap("b", "hidden"), expected, rtol=1e-5, atol=1e-5)


def test_affine_with_overlapping_names_inlines_rename():
  affine = pz.nn.Affine.from_config(
      name="a",
      init_base_rng=jax.random.key(0),
      input_axes={"emb": 3},
      output_axes={"emb": 5},
      parallel_broadcast_axes={"h": 2},
  )
  kinds = [type(layer) for layer in affine.sublayers]
  assert kinds == [pz.nn.Linear, pz.nn.RenameAxes, pz.nn.AddBias]
  assert affine.sublayers[2].bias.value.named_shape == {"h": 2, "emb": 5}
  out = affine(pz.nx.wrap(jnp.ones(3), "emb"))
  assert dict(out.named_shape) == {"emb": 5, "h": 2}


def test_affine_without_key_has_slots():
  affine = pz.nn.Affine.from_config(
      name="a", init_base_rng=None, input_axes={"i": 1}, output_axes={"o": 1}
  )
  assert affine.sublayers[0].weights == pz.ParameterSlot("a/Linear.weights")
  assert affine.sublayers[1].bias == pz.ParameterSlot("a/AddBias.bias")


def test_add_bias_new_axes_and_errors():
  bias = pz.nn.AddBias.from_config(
      name="b",
      init_base_rng=jax.random.key(0),
      biased_axes={"x": 2},
      new_output_axes={"n": 3},
      initializer=pz.nn.constant_initializer(1.5),
  )
  assert bias.new_axis_names == ("n",)
  assert bias.treescope_color() == "#65cfbc"
  out = bias(pz.nx.wrap(jnp.zeros(2), "x"))
  assert dict(out.named_shape) == {"x": 2, "n": 3}
  np.testing.assert_allclose(out.unwrap("x", "n"), 1.5)
  with pytest.raises(ValueError, match=r"\(b\).*'x'"):
    bias(pz.nx.wrap(jnp.zeros(5), "x"))


def test_constant_rescale():
  layer = pz.nn.ConstantRescale(by=jnp.array(2.0))
  x = pz.nx.wrap(jnp.arange(3.0), "a")
  np.testing.assert_allclose(layer(x).unwrap("a"), [0.0, 2.0, 4.0])
  np.testing.assert_allclose(layer(jnp.ones(2)), [2.0, 2.0])
  assert len(jax.tree_util.tree_leaves(layer)) == 1


def test_rename_axes():
  x = pz.nx.wrap(jnp.ones((2, 3)), "a", "b")
  out = pz.nn.RenameAxes(old=("a", "b"), new=("c", "d"))(x)
  assert dict(out.named_shape) == {"c": 2, "d": 3}
  assert dict(pz.nn.RenameAxes("a", "z")(x).named_shape) == {"z": 2, "b": 3}
  with pytest.raises(ValueError, match="RenameAxes.*'q'"):
    pz.nn.RenameAxes("q", "r")(x)


# ---------------------------------------------------------------------------
# contract and NamedEinsum
# ---------------------------------------------------------------------------


def test_contract_matches_einsum():
  a = _normal((2, 3, 4), 0)
  b = _normal((3, 4, 5), 1)
  left = pz.nx.wrap(a, "x", "i", "j")
  right = pz.nx.wrap(b, "i", "j", "y")
  out = pz.nn.contract(("i", "j"), left, right)
  np.testing.assert_allclose(
      out.unwrap("x", "y"), np.einsum("xij,ijy->xy", a, b), rtol=1e-5, atol=1e-5
  )
  single = pz.nn.contract("i", left, pz.nx.wrap(b[:, 0, :], "i", "y"))
  np.testing.assert_allclose(
      single.unwrap("x", "j", "y"),
      np.einsum("xij,iy->xjy", a, b[:, 0, :]),
      rtol=1e-5, atol=1e-5,
  )


def test_named_einsum_matmul_with_batch_axes():
  a = _normal((2, 3, 4), 0)
  b = _normal((2, 4, 5), 1)
  layer = pz.nn.NamedEinsum(
      (("q", "k"), {"k2": "k", "v": "v"}), {"out_q": "q", "out_v": "v"}
  )
  out = layer((pz.nx.wrap(a, "b", "q", "k"), pz.nx.wrap(b, "b", "k2", "v")))
  assert list(out.named_shape) == ["b", "out_q", "out_v"]
  np.testing.assert_allclose(
      out.unwrap("b", "out_q", "out_v"),
      np.einsum("bqk,bkv->bqv", a, b),
      rtol=1e-5, atol=1e-5,
  )


def test_named_einsum_diagonal():
  a = _normal((3, 3), 0)
  layer = pz.nn.NamedEinsum(({"r": "i", "c": "i"},), {"d": "i"})
  out = layer((pz.nx.wrap(a, "r", "c"),))
  np.testing.assert_allclose(out.unwrap("d"), np.diagonal(a), rtol=1e-6)


def test_named_einsum_errors():
  layer = pz.nn.NamedEinsum((("i", "j"), ("j", "k")), ("i", "k"))
  a = pz.nx.wrap(jnp.ones((2, 3)), "i", "j")
  with pytest.raises(pz.chk.StructureMismatchError):
    layer((a, pz.nx.wrap(jnp.ones((4, 5)), "j", "k")))  # j size mismatch
  with pytest.raises(pz.chk.StructureMismatchError):
    layer((a, pz.nx.wrap(jnp.ones((3, 5, 2)), "j", "k", "extra")))
  with pytest.raises(pz.chk.StructureMismatchError):
    layer((a, pz.nx.wrap(jnp.ones((3, 5), jnp.int32), "j", "k")))


# ---------------------------------------------------------------------------
# Initializers
# ---------------------------------------------------------------------------


def test_variance_scaling_matches_jax_and_axis_order():
  key = jax.random.key(4)
  result = pz.nn.variance_scaling_initializer(
      key,
      scale=2.0,
      mode="fan_in",
      distribution="normal",
      input_axes={"i": 3},
      output_axes={"o": 4},
      parallel_axes={"h": 2},
      convolution_spatial_axes={"s": 5},
      dtype=jnp.float32,
  )
  assert list(result.named_shape) == ["h", "s", "i", "o"]
  reference = jax.nn.initializers.variance_scaling(
      2.0, "fan_in", "normal", in_axis=[2], out_axis=[3], batch_axis=[0]
  )(key, (2, 5, 3, 4, 1, 1), jnp.float32)[..., 0, 0]
  np.testing.assert_array_equal(result.unwrap("h", "s", "i", "o"), reference)


def test_xavier_uniform_bounds_and_partials():
  assert isinstance(pz.nn.xavier_uniform_initializer, functools.partial)
  assert isinstance(pz.nn.xavier_normal_initializer, functools.partial)
  w = pz.nn.xavier_uniform_initializer(
      jax.random.key(0),
      input_axes={"i": 30},
      output_axes={"o": 20},
      parallel_axes={"h": 3},
      convolution_spatial_axes={},
      dtype=jnp.float32,
  ).unwrap("h", "i", "o")
  limit = np.sqrt(6.0 / (30 + 20))
  assert np.abs(w).max() <= limit
  assert np.abs(w).max() > 0.8 * limit
  normal = pz.nn.xavier_normal_initializer(
      jax.random.key(1),
      input_axes={"i": 40},
      output_axes={"o": 60},
      parallel_axes={},
      convolution_spatial_axes={},
      dtype=jnp.float32,
  ).unwrap("i", "o")
  assert abs(float(np.std(normal)) - np.sqrt(2.0 / 100)) < 0.01


def test_constant_and_zero_initializers():
  init = pz.nn.constant_initializer(3.0)
  w = init(
      None,
      input_axes={"i": 2},
      output_axes={"o": 3},
      parallel_axes={"p": 1},
      convolution_spatial_axes={},
      dtype=jnp.bfloat16,
  )
  assert list(w.named_shape) == ["i", "o", "p"]
  assert w.dtype == jnp.bfloat16
  np.testing.assert_array_equal(w.unwrap("i", "o", "p"), 3.0)
  z = pz.nn.zero_initializer(
      jax.random.key(0),
      input_axes={},
      output_axes={"o": 2},
      parallel_axes={},
      convolution_spatial_axes={},
      dtype=jnp.float32,
  )
  np.testing.assert_array_equal(z.unwrap("o"), 0.0)


@pytest.mark.parametrize(
    "initializer",
    [pz.nn.zero_initializer, pz.nn.xavier_uniform_initializer],
)
def test_initializers_reject_duplicate_axes(initializer):
  with pytest.raises(
      ValueError, match=r"^Duplicate axis names during initialization: \{'a'\}\.$"
  ):
    initializer(
        jax.random.key(0),
        input_axes={"a": 2},
        output_axes={"a": 2},
        parallel_axes={},
        convolution_spatial_axes={},
        dtype=jnp.float32,
    )


def test_module_aliases():
  assert linear_and_affine.NamedArray is pz.nx.NamedArray
  assert linear_and_affine.Parameter is pz.Parameter
  assert linear_and_affine.ParameterValue is pz.ParameterValue
  assert pz.nn.Linear is linear_and_affine.Linear
  linear_and_affine.check_unique_axis_names_for_initializer(
      {"a": 1}, {"b": 1}, {"c": 1}, {"d": 1}
  )


def test_linear_rename_refuses_to_clobber_an_output_axis():
  with pytest.raises(ValueError, match="output_axes already contains a_out"):
    _linear(input_axes={"a": 2}, output_axes={"a": 2, "a_out": 3})
