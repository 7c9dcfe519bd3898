"""Tests for the treescope rendering of penzai core objects (core.md §11)."""

import collections
import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import treescope
from treescope import layout_algorithms
from treescope import lowering
from treescope import ndarray_adapters
from treescope import rendering_parts

from penzai import pz
from penzai.core._treescope_handlers import named_axes_handlers
from penzai.core._treescope_handlers import selection_rendering
from penzai.core._treescope_handlers import shapecheck_handlers
from penzai.core._treescope_handlers import struct_handler

var = pz.chk.var


@pz.pytree_dataclass
class Plain(pz.Struct):
  a: int
  b: int = dataclasses.field(metadata={"pytree_node": False})


@pz.pytree_dataclass
class CustomInit(pz.Struct):
  a: int

  def __init__(self, x: int):
    self.a = x


@pz.pytree_dataclass
class CallableStruct(pz.Struct):
  inner: object

  def __call__(self, x):
    return x


@pz.pytree_dataclass
class TwoColors(pz.Struct):
  x: int

  def treescope_color(self):
    return ("#ff0000", "#00ff00")


@pz.pytree_dataclass
class CustomKey(pz.Struct):
  a: object

  def key_for_field(self, field_name):
    return "custom"


def html(value) -> str:
  return treescope.render_to_html(value, compressed=False)


def fully_expanded_text(value, roundtrip_mode=False, depth=10) -> str:
  ir = rendering_parts.build_full_line_with_annotations(
      treescope.active_renderer.get().to_foldable_representation(value)
  )
  layout_algorithms.expand_to_depth(ir, depth)
  return lowering.render_to_text_as_root(ir, roundtrip=roundtrip_mode)


def part_text(part) -> str:
  return lowering.render_to_text_as_root(part)


# --- structs -------------------------------------------------------------------


def test_struct_collapsed_and_expanded():
  assert treescope.render_to_text(Plain(1, 3)) == "Plain(a=1, b=3)"
  assert repr(Plain(1, 3)) == "Plain(a=1, b=3)"
  long = CallableStruct(["x" * 50, "y" * 50])
  assert treescope.render_to_text(long) == (
      "CallableStruct(\n"
      "  inner=[\n"
      f"    '{'x' * 50}',\n"
      f"    '{'y' * 50}',\n"
      "  ],\n"
      ")"
  )
  assert "\n" not in repr(long)


def test_struct_roundtrip_names():
  module = Plain.__module__
  assert (
      treescope.render_to_text(Plain(1, 0), roundtrip_mode=True)
      == f"{module}.Plain(a=1, b=0)"
  )
  assert (
      treescope.render_to_text(CustomInit(1), roundtrip_mode=True)
      == f"{module}.CustomInit.from_attributes(a=1)"
  )
  assert treescope.render_to_text(CustomInit(1)) == "CustomInit(a=1)"


def test_struct_field_name_styles_and_colors():
  out = html(Plain(1, 2))
  assert "font-style: italic; color: #00225f;" in out
  assert out.count("font-style: italic; color: #00225f;") == 1
  color = pz.color_from_string(
      f"{CallableStruct.__module__}.{CallableStruct.__qualname__}"
  )
  assert color in html(CallableStruct(1))
  assert color not in html(Plain(1, 2))
  assert "linear-gradient(#00ff00,#00ff00)" in html(TwoColors(1))


def test_struct_helper_functions():
  assert part_text(struct_handler.render_struct_constructor(Plain(1, 2))) == "Plain("
  assert (
      lowering.render_to_text_as_root(
          struct_handler.render_struct_constructor(CustomInit(1)), roundtrip=True
      ).endswith("CustomInit.from_attributes(")
  )
  assert (
      part_text(struct_handler.render_short_struct_summary(CallableStruct(3)))
      == "CallableStruct(...)"
  )
  style_fn = struct_handler.struct_attr_style_fn_for_fields(
      dataclasses.fields(Plain)
  )
  assert part_text(style_fn("a")) == "a" and part_text(style_fn("b")) == "b"
  assert "italic" in lowering.render_to_html_as_root(style_fn("a"))
  assert "italic" not in lowering.render_to_html_as_root(style_fn("b"))
  assert struct_handler.handle_structs(3, None, None) is NotImplemented


# --- named arrays --------------------------------------------------------------


def test_named_array_summaries():
  arr = pz.nx.wrap(jnp.arange(6.0).reshape(2, 3)).tag("foo", "bar")
  assert treescope.render_to_text(arr) == (
      "<NamedArray float32(| foo:2, bar:3) ≈2.5 ±1.7 [≥0.0, ≤5.0] zero:1"
      " nonzero:5 (wrapping jax.Array)>"
  )
  view = pz.nx.wrap(jnp.arange(6).reshape(3, 2)).tag("x", "foo").untag("x")
  assert treescope.render_to_text(view) == (
      "<NamedArrayView int32(3 | foo:2) [≥0, ≤5] zero:1 nonzero:5 (wrapping"
      " jax.Array)>"
  )
  assert treescope.render_to_text(pz.nx.wrap(jnp.arange(3))) == (
      "<NamedArray Array([0, 1, 2], dtype=int32) (wrapping jax.Array)>"
  )
  np_view = pz.nx.NamedArrayView(
      data_shape=(3,),
      data_axis_for_logical_axis=(0,),
      data_axis_for_name={},
      data_array=np.zeros(3),
  )
  assert treescope.render_to_text(np_view) == (
      "<NamedArrayView float64(3 |) (wrapping numpy.ndarray)>"
  )
  keys = pz.nx.wrap(jax.random.split(jax.random.key(0), 3)).tag("k")
  assert treescope.render_to_text(keys) == (
      "<NamedArray key<fry>(| k:3) (wrapping jax.Array)>"
  )


def test_named_array_under_jit():
  seen = []

  @jax.jit
  def f(x):
    seen.append(treescope.render_to_text(x))
    return x

  f(pz.nx.zeros({"a": 3, "b": 4}))
  assert seen == ["<NamedArray float32(| a:3, b:4) (wrapping DynamicJaxprTracer)>"]


def test_invalid_named_array_renders_as_struct():
  bad = pz.nx.NamedArrayView(
      data_shape=(4,),
      data_axis_for_logical_axis=(0,),
      data_axis_for_name={},
      data_array=np.zeros(3),
  )
  assert treescope.render_to_text(bad).startswith(
      "NamedArrayView(\n  data_shape=(4,),"
  )


def test_named_array_expanded_form():
  arr = pz.nx.wrap(jnp.arange(6.0).reshape(2, 3)).tag("foo", "bar")
  lines = fully_expanded_text(arr).splitlines()
  assert lines[0] == (
      "NamedArray(  # float32(| foo:2, bar:3) ≈2.5 ±1.7 [≥0.0, ≤5.0] zero:1"
      " nonzero:5"
  )
  assert lines[1].startswith("  named_axes=OrderedDict(")
  assert lines[-1] == ")"
  assert any(line.startswith("  data_array=") for line in lines)


def test_summary_function():
  arr = pz.nx.wrap(jnp.ones((2, 3))).tag("a", "b")
  assert named_axes_handlers.named_array_and_contained_type_summary(
      arr, inspect_device_data=False
  ) == ("float32(| a:2, b:3)", "jax.Array")
  abstract = pz.nx.NamedArray(
      named_axes=collections.OrderedDict({"a": 3}),
      data_array=jax.ShapeDtypeStruct((2, 3), jnp.float32),
  )
  assert named_axes_handlers.named_array_and_contained_type_summary(abstract) == (
      "float32(2 | a:3)",
      "ShapeDtypeStruct",
  )


def test_named_array_adapter_axis_info():
  x = jnp.arange(20.0).reshape(4, 5)
  view = pz.nx.wrap(x).tag("p", "q").untag("q", "p")
  adapter = view.__treescope_ndarray_adapter__()
  assert isinstance(adapter, named_axes_handlers.NamedArrayAdapter)
  assert adapter.get_axis_info_for_array_data(view) == (
      ndarray_adapters.PositionalAxisInfo(axis_logical_index=1, size=4),
      ndarray_adapters.PositionalAxisInfo(axis_logical_index=0, size=5),
  )
  named = pz.nx.wrap(x).tag_prefix("p")
  assert adapter.get_axis_info_for_array_data(named) == (
      ndarray_adapters.NamedPositionlessAxisInfo(axis_name="p", size=4),
      ndarray_adapters.PositionalAxisInfo(axis_logical_index=0, size=5),
  )


def test_named_array_adapter_truncation_matches_plain_array():
  x = jnp.arange(20.0).reshape(4, 5)
  mask = jnp.array([True, False, True, True])
  adapter = named_axes_handlers.NamedArrayAdapter()
  plain = treescope.external.jax_support.JAXArrayAdapter()
  view = pz.nx.wrap(x).tag("p", "q").untag("q", "p")  # data axes (p, q)
  got = adapter.get_array_data_with_truncation(view, pz.nx.wrap(mask), (1, None))
  want = plain.get_array_data_with_truncation(x, mask[:, None], (1, None))
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])
  named = pz.nx.wrap(x).tag("p", "q")
  got = adapter.get_array_data_with_truncation(
      named, pz.nx.wrap(mask).tag("p"), (None, None)
  )
  want = plain.get_array_data_with_truncation(x, mask[:, None], (None, None))
  np.testing.assert_array_equal(got[1], want[1])
  got = adapter.get_array_data_with_truncation(named, None, (1, 1))
  want = plain.get_array_data_with_truncation(x, None, (1, 1))
  np.testing.assert_array_equal(got[0], want[0])


def test_named_array_adapter_mask_errors():
  adapter = named_axes_handlers.NamedArrayAdapter()
  named = pz.nx.wrap(jnp.zeros((4, 5))).tag("p", "q")
  with pytest.raises(ValueError, match="it had extra axis names"):
    adapter.get_array_data_with_truncation(
        named, pz.nx.wrap(jnp.ones((3,), bool)).tag("z"), (None, None)
    )
  with pytest.raises(ValueError, match=r"does not match \(a suffix of\)"):
    adapter.get_array_data_with_truncation(
        named, jnp.ones((3,), bool), (None, None)
    )


def test_named_array_adapter_metadata():
  adapter = named_axes_handlers.NamedArrayAdapter()
  arr = pz.nx.wrap(jnp.arange(4.0)).tag("a")
  assert adapter.get_array_summary(arr, fast=True) == (
      "NamedArray float32(| a:4) (wrapping jax.Array)"
  )
  assert "≈" in adapter.get_array_summary(arr, fast=False)
  assert adapter.get_numpy_dtype(arr) == np.dtype("float32")
  assert adapter.should_autovisualize(arr)
  assert adapter.get_sharding_info_for_array_data(arr).fully_replicated
  abstract = pz.nx.NamedArray(
      named_axes=collections.OrderedDict({"a": 3}),
      data_array=jax.ShapeDtypeStruct((3,), jnp.float32),
  )
  assert not adapter.should_autovisualize(abstract)
  assert adapter.get_sharding_info_for_array_data(abstract) is None


def test_render_array_accepts_named_arrays():
  named = pz.nx.wrap(jnp.arange(6.0).reshape(2, 3)).tag("alpha", "beta")
  figure = treescope.render_array(named)
  out = lowering.render_to_html_as_root(figure.treescope_part, compressed=False)
  assert '"label": "alpha: 2"' in out and '"label": "beta: 3"' in out


# --- shapecheck objects ----------------------------------------------------------


def test_arrayspec_summaries():
  assert treescope.render_to_text(pz.chk.ArraySpec(shape=(1, var("x")))) == (
      "<ArraySpec any(1, {x})>"
  )
  assert treescope.render_to_text(
      pz.chk.ArraySpec(shape=(3,), named_shape={"a": 2}, dtype=jnp.float32)
  ) == "<ArraySpec float32(3 | a:2)>"
  assert treescope.render_to_text(pz.chk.ArraySpec(named_shape={"a": 2})) == (
      "<ArraySpec any(| a:2)>"
  )
  spec = pz.chk.ArraySpec(
      shape=(2, var("n"), *var("batch")),
      named_shape={
          "a": 3,
          **var("rest"),
          **pz.chk.vars_for_axes("v", {"b": None, "c": 4}),
      },
      dtype=np.float32,
  )
  assert treescope.render_to_text(spec) == (
      "<ArraySpec float32(2, {n}, *{batch…} | a:3, **{rest:…}, b:{v/b}, c:4)>"
  )
  assert repr(spec) == treescope.render_to_text(spec)
  assert treescope.render_to_text(pz.chk.ArraySpec(dtype=np.floating)) == (
      "<ArraySpec floating()>"
  )
  assert '<span style="color:#1b3e73;">&lt;ArraySpec float32(' in html(spec)


def test_arrayspec_expanded_and_roundtrip():
  spec = pz.chk.ArraySpec(shape=(1, var("x")))
  assert fully_expanded_text(spec, depth=2) == (
      "ArraySpec(\n"
      "  shape=(1, DimVar(name='x')),\n"
      "  dtype=numpy.generic,\n"
      "  named_shape={},\n"
      ")"
  )
  assert treescope.render_to_text(spec, roundtrip_mode=True) == (
      "penzai.core.shapecheck.ArraySpec(shape=(1,"
      " penzai.core.shapecheck.DimVar(name='x')), dtype=numpy.generic,"
      " named_shape={})"
  )


def test_wildcard_rendering():
  assert treescope.render_to_text(pz.chk.ANY) == "*"
  assert treescope.render_to_text(pz.chk.Wildcard("foo")) == "<foo>"
  assert treescope.render_to_text(pz.chk.ANY, roundtrip_mode=True) == (
      "penzai.core.shapecheck.Wildcard(None)"
  )
  assert treescope.render_to_text(pz.chk.Wildcard("d"), roundtrip_mode=True) == (
      "penzai.core.shapecheck.Wildcard('d')"
  )
  assert treescope.render_to_text({"a": pz.chk.ANY}) == "{'a': *}"
  assert shapecheck_handlers.handle_arraystructures(3, None, None) is NotImplemented


# --- variables -----------------------------------------------------------------


def test_variable_renderings():
  param = pz.Parameter(label="p", value=jnp.ones(2))
  assert repr(param) == (
      "Parameter(label='p', value=<jax.Array([1., 1.], dtype=float32)>,"
      " metadata={})"
  )
  assert repr(pz.ParameterSlot("p")) == "ParameterSlot(label='p')"
  assert repr(param.freeze()) == (
      "ParameterValue(label='p', value=<jax.Array([1., 1.], dtype=float32)>,"
      " metadata={})"
  )
  assert "#93cce1" in html(param)


# --- selections ------------------------------------------------------------------


@pz.pytree_dataclass
class Pair(pz.Struct):
  a: object
  b: object


def selection_text(selection, **kwargs) -> str:
  return part_text(
      selection_rendering.render_selection_to_foldable_representation(
          selection, **kwargs
      )
  )


def test_selection_repr_is_plain_struct():
  selection = pz.select({"x": 1}).at(lambda t: t["x"])
  assert repr(selection) == (
      "Selection(selected_by_path=OrderedDict({(DictKey(key='x'),): 1}),"
      " remainder={'x': SelectionHole(path=(DictKey(key='x'),))})"
  )


def test_selection_root_rendering_boxes_selected_nodes():
  tree = {"x": Pair(1, [2, 3]), "y": Pair(Pair(4, 5), 6)}
  selection = pz.select(tree).at(lambda t: [t["x"].b, t["y"].a.b], multiple=True)
  text = selection_text(selection)
  assert text.startswith("pz.select(\n  {\n")
  assert text.endswith(").at_keypaths(<2 subtrees, highlighted above>)")
  assert text.count("# Selected:") == 2
  assert "  # Selected:\n      [2, 3]\n" in text
  assert "# Selected:\n        5\n" in text
  root = selection.__treescope_root_repr__()
  assert part_text(root) == text
  root_html = lowering.render_to_html_as_root(root)
  assert "border: 2px solid cyan; border-left: 2ch solid cyan;" in root_html
  assert "color: darkcyan; font-weight: bold;" in root_html


def test_selection_keypaths_expand():
  selection = pz.select([1, 2]).at(lambda t: t[1])
  root = selection_rendering.render_selection_to_foldable_representation(selection)
  layout_algorithms.expand_to_depth(root, 20)
  text = part_text(root)
  assert "# 1 subtrees, highlighted above" in text
  assert "SequenceKey(\n        idx=1," in text


def test_selection_value_only_rendering():
  tree = {"x": Pair(1, [2, 3]), "y": Pair(Pair(4, 5), 6)}
  selection = pz.select(tree).at(lambda t: t["y"].a.b)
  assert selection_text(selection, visible_selection=False) == (
      "{\n"
      "  'x': Pair(a=1, b=[2, 3]),\n"
      "  'y': Pair(\n"
      "    a=Pair(\n"
      "      a=4,\n"
      "      b=5,\n"
      "    ),\n"
      "    b=6,\n"
      "  ),\n"
      "}"
  )


def test_selection_root_selected():
  assert selection_text(pz.select(3)) == (
      "pz.select(\n"
      "  #╭┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄╮\n"
      "  # Selected:\n"
      "  3\n"
      "  #╰┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄╯\n"
      ").at_keypaths(<1 subtrees, highlighted above>)"
  )


def test_selection_unrendered_nodes_warn():
  selection = pz.select([CustomKey(1), 2]).at(lambda t: t[0].a)
  text = selection_text(selection)
  assert text.splitlines()[0].startswith("# Warning: Selected node at")
  assert "was not rendered" in text


def test_is_rendering_a_selection():
  seen = []

  class Probe:

    def __treescope_repr__(self, path, subtree_renderer):
      seen.append(selection_rendering.is_rendering_a_selection())
      return rendering_parts.text("probe")

  selection_text(pz.select([Probe()]).at(lambda t: t[0]))
  treescope.render_to_text(Probe())
  assert seen == [True, False]
  assert not selection_rendering.is_rendering_a_selection()


def test_show_selection_requires_ipython():
  selection = pz.select([1]).at(lambda t: t[0])
  with pytest.raises(ModuleNotFoundError, match="IPython"):
    selection.show_selection()
  with pytest.raises(ModuleNotFoundError, match="IPython"):
    selection.show_value()


def test_named_arrays_autovisualize():
  arr = pz.nx.wrap(jnp.arange(6.0).reshape(2, 3)).tag("alpha", "beta")
  with treescope.active_autovisualizer.set_scoped(treescope.ArrayAutovisualizer()):
    text = treescope.render_to_text({"x": arr})
    out = html({"x": arr})
  assert "<Arrayviz rendering>" in text
  assert '"label": "alpha: 2"' in out
