"""Seed conformance: the V2 API overview page (seed 003).

Every `pz.*` entry listed on the page must exist, be the documented object,
be reachable through the legacy `penzai.experimental.v2` paths the page
cites, and accept the call forms shown in its signature column.
"""

import collections.abc
import dataclasses
import functools
import importlib
import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
import penzai.core.named_axes
import penzai.core.shapecheck

# (pz name, legacy module path cited by the page) for the V2-specific section.
V2_SPECIFIC = [
    ("Parameter", "core.variables"),
    ("ParameterValue", "core.variables"),
    ("ParameterSlot", "core.variables"),
    ("StateVariable", "core.variables"),
    ("StateVariableValue", "core.variables"),
    ("StateVariableSlot", "core.variables"),
    ("unbind_variables", "core.variables"),
    ("bind_variables", "core.variables"),
    ("freeze_variables", "core.variables"),
    ("variable_jit", "core.variables"),
    ("unbind_params", "core.variables"),
    ("freeze_params", "core.variables"),
    ("unbind_state_vars", "core.variables"),
    ("freeze_state_vars", "core.variables"),
    ("VariableConflictError", "core.variables"),
    ("UnboundVariableError", "core.variables"),
    ("AbstractVariable", "core.variables"),
    ("AbstractVariableValue", "core.variables"),
    ("AbstractVariableSlot", "core.variables"),
    ("AutoStateVarLabel", "core.variables"),
    ("ScopedStateVarLabel", "core.variables"),
    ("scoped_auto_state_var_labels", "core.variables"),
    ("RandomStream", "core.random_stream"),
]

# (pz.nn name, legacy module under penzai.experimental.v2.nn).
NN_NAMES = [
    ("Layer", "layer"),
    ("ParameterLike", "parameters"),
    ("derive_param_key", "parameters"),
    ("make_parameter", "parameters"),
    ("assert_no_parameter_slots", "parameters"),
    ("Sequential", "grouping"),
    ("NamedGroup", "grouping"),
    ("CheckedSequential", "grouping"),
    ("Residual", "combinators"),
    ("BranchAndAddTogether", "combinators"),
    ("BranchAndMultiplyTogether", "combinators"),
    ("inline_anonymous_sequentials", "grouping"),
    ("inline_groups", "grouping"),
    ("is_anonymous_sequential", "grouping"),
    ("is_sequential_or_named", "grouping"),
    ("Elementwise", "basic_ops"),
    ("Softmax", "basic_ops"),
    ("CheckStructure", "grouping"),
    ("Identity", "grouping"),
    ("CastToDType", "basic_ops"),
    ("Linear", "linear_and_affine"),
    ("RenameAxes", "linear_and_affine"),
    ("AddBias", "linear_and_affine"),
    ("Affine", "linear_and_affine"),
    ("ConstantRescale", "linear_and_affine"),
    ("NamedEinsum", "linear_and_affine"),
    ("LinearInPlace", "linear_and_affine"),
    ("LinearOperatorWeightInitializer", "linear_and_affine"),
    ("contract", "linear_and_affine"),
    ("variance_scaling_initializer", "linear_and_affine"),
    ("xavier_normal_initializer", "linear_and_affine"),
    ("xavier_uniform_initializer", "linear_and_affine"),
    ("constant_initializer", "linear_and_affine"),
    ("zero_initializer", "linear_and_affine"),
    ("LayerNorm", "standardization"),
    ("Standardize", "standardization"),
    ("RMSLayerNorm", "standardization"),
    ("RMSStandardize", "standardization"),
    ("StochasticDropout", "dropout"),
    ("DisabledDropout", "dropout"),
    ("maybe_dropout", "dropout"),
    ("Attention", "attention"),
    ("KVCachingAttention", "attention"),
    ("ApplyExplicitAttentionMask", "attention"),
    ("ApplyCausalAttentionMask", "attention"),
    ("ApplyCausalSlidingWindowAttentionMask", "attention"),
    ("EmbeddingTable", "embeddings"),
    ("EmbeddingLookup", "embeddings"),
    ("EmbeddingDecode", "embeddings"),
    ("ApplyRoPE", "embeddings"),
    ("LayerStack", "layer_stack"),
    ("LayerStackVarBehavior", "layer_stack"),
    ("layerstack_axes_from_keypath", "layer_stack"),
    ("LayerStackGetAttrKey", "layer_stack"),
]

# Core utilities "shared with the V1 API": (pz name, defining module).
CORE_NAMES = [
    ("pytree_dataclass", "penzai.core.struct"),
    ("Struct", "penzai.core.struct"),
    ("select", "penzai.core.selectors"),
    ("Selection", "penzai.core.selectors"),
    ("combine", "penzai.core.partitioning"),
    ("NotInThisPartition", "penzai.core.partitioning"),
    ("pretty_keystr", "penzai.core.tree_util"),
    ("is_pytree_dataclass_type", "penzai.core.struct"),
    ("is_pytree_node_field", "penzai.core.struct"),
    ("StructStaticMetadata", "penzai.core.struct"),
    ("PyTreeDataclassSafetyError", "penzai.core.struct"),
]


@pytest.fixture(name="legacy_pz", scope="module")
def legacy_v2_pz():
  """`from penzai.experimental.v2 import pz`, as the page suggests.

  (The deprecation warning itself is checked in tests/experimental_v2_test.py.)
  """
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from penzai.experimental.v2 import pz as v2_pz  # pylint: disable=g-import-not-at-top
  return v2_pz


@pytest.mark.parametrize("name,module", V2_SPECIFIC)
def test_v2_specific_names(legacy_pz, name, module):
  obj = getattr(pz, name)
  assert getattr(legacy_pz, name) is obj
  legacy_module = importlib.import_module(f"penzai.experimental.v2.{module}")
  assert getattr(legacy_module, name) is obj
  assert getattr(importlib.import_module(f"penzai.{module}"), name) is obj


@pytest.mark.parametrize("name,module", NN_NAMES)
def test_nn_names(legacy_pz, name, module):
  obj = getattr(pz.nn, name)
  assert getattr(legacy_pz.nn, name) is obj
  legacy_module = importlib.import_module(f"penzai.experimental.v2.nn.{module}")
  assert getattr(legacy_module, name) is obj
  assert getattr(importlib.import_module(f"penzai.nn.{module}"), name) is obj


@pytest.mark.parametrize("name,module", CORE_NAMES)
def test_core_names(legacy_pz, name, module):
  obj = getattr(pz, name)
  assert getattr(legacy_pz, name) is obj
  assert getattr(importlib.import_module(module), name) is obj


def test_alias_namespaces(legacy_pz):
  assert pz.nx is penzai.core.named_axes
  assert pz.chk is penzai.core.shapecheck
  assert pz.nx.wrap == pz.nx.NamedArray.wrap
  assert legacy_pz.nx is pz.nx
  assert legacy_pz.ts.render_array is pz.ts.render_array
  assert pz.VariableLabel is collections.abc.Hashable


def test_xavier_initializers_are_variance_scaling_partials():
  for init, dist in (
      (pz.nn.xavier_normal_initializer, "normal"),
      (pz.nn.xavier_uniform_initializer, "uniform"),
  ):
    assert isinstance(init, functools.partial)
    assert init.func is pz.nn.variance_scaling_initializer
    assert init.keywords == {
        "scale": 1.0, "mode": "fan_avg", "distribution": dist
    }


# The signature column of the page: leading parameter names and markers.
SIGNATURES = [
    (lambda: pz.bind_variables, ["tree", "variables"]),
    (lambda: pz.freeze_variables, ["tree", "predicate"]),
    (lambda: pz.freeze_params, ["tree", "predicate"]),
    (lambda: pz.freeze_state_vars, ["tree", "predicate"]),
    (lambda: pz.nn.derive_param_key, ["base_rng", "name"]),
    (lambda: pz.nn.make_parameter, ["name", "init_base_rng"]),
    (lambda: pz.nn.assert_no_parameter_slots, ["model"]),
    (lambda: pz.nn.inline_anonymous_sequentials, ["tree"]),
    (lambda: pz.nn.inline_groups, ["tree", "parent_filter"]),
    (lambda: pz.nn.is_anonymous_sequential, ["tree"]),
    (lambda: pz.nn.is_sequential_or_named, ["tree"]),
    (lambda: pz.nn.maybe_dropout, ["drop_rate"]),
    (lambda: pz.nn.contract, ["names", "left", "right"]),
    (lambda: pz.nn.variance_scaling_initializer, ["key"]),
    (lambda: pz.nn.xavier_normal_initializer, ["key"]),
    (lambda: pz.nn.xavier_uniform_initializer, ["key"]),
    (lambda: pz.nn.constant_initializer, ["value"]),
    (lambda: pz.nn.zero_initializer, ["key"]),
    (lambda: pz.nn.layerstack_axes_from_keypath, ["keypath"]),
    (lambda: pz.select, ["tree"]),
    (lambda: pz.combine, ["partitions"]),
    (lambda: pz.pretty_keystr, ["keypath", "tree"]),
    (lambda: pz.nx.nmap, ["fun"]),
    (lambda: pz.nx.wrap, ["array", "names"]),
    (lambda: pz.show, ["args"]),
    (lambda: pz.chk.var, ["name"]),
    (lambda: pz.chk.vars_for_axes, ["var_name"]),
    (lambda: pz.dataclass_from_attributes, ["cls", "field_values"]),
    (lambda: pz.init_takes_fields, ["cls"]),
    (lambda: pz.is_pytree_dataclass_type, ["cls"]),
    (lambda: pz.is_pytree_node_field, ["field"]),
    (lambda: pz.pytree_dataclass, ["cls"]),
    (lambda: pz.scoped_auto_state_var_labels, ["group"]),
    (lambda: pz.ts.render_array, ["array"]),
]


@pytest.mark.parametrize("get_fn,leading", SIGNATURES)
def test_signature_leading_parameters(get_fn, leading):
  params = list(inspect.signature(get_fn()).parameters)
  assert params[: len(leading)] == leading


def test_signature_markers():
  P = inspect.Parameter  # pylint: disable=invalid-name
  sig = inspect.signature(pz.variable_jit).parameters
  assert sig["fun"].kind is P.POSITIONAL_OR_KEYWORD
  assert sig["donate_variables"].kind is P.KEYWORD_ONLY
  sig = inspect.signature(pz.nn.variance_scaling_initializer).parameters
  assert all(
      p.kind is P.KEYWORD_ONLY for n, p in sig.items() if n != "key"
  )
  sig = inspect.signature(pz.nn.zero_initializer).parameters
  assert [n for n, p in sig.items() if p.kind is P.KEYWORD_ONLY][:1] == [
      "input_axes"
  ]
  sig = inspect.signature(pz.ts.render_array).parameters
  assert sig["columns"].kind is P.KEYWORD_ONLY
  sig = inspect.signature(pz.show).parameters
  assert sig["args"].kind is P.VAR_POSITIONAL
  assert sig["wrap"].default is False
  assert sig["space_separated"].default is True
  sig = inspect.signature(pz.nx.wrap).parameters
  assert sig["names"].kind is P.VAR_POSITIONAL
  sig = inspect.signature(pz.combine).parameters
  assert sig["partitions"].kind is P.VAR_POSITIONAL


# --- Behaviour summarized on the page.


def test_slice_helper():
  assert pz.slice[1:3] == slice(1, 3, None)
  arr = pz.nx.wrap(jnp.arange(10), "x")
  np.testing.assert_array_equal(
      arr[{"x": pz.slice[1:3]}].unwrap("x"), np.array([1, 2])
  )


def test_nmap_and_wrap():
  x = pz.nx.wrap(jnp.arange(6.0).reshape(2, 3), "a", "b")
  y = pz.nx.nmap(jnp.sum)(x.untag("b"))
  assert dict(y.named_shape) == {"a": 2}
  np.testing.assert_array_equal(y.unwrap("a"), np.array([3.0, 12.0]))


def test_shape_checking_helpers():
  value = pz.nx.wrap(jnp.zeros((2, 3, 4)), "batch", "heads", "dim")
  spec = pz.chk.ArraySpec(
      named_shape={
          "batch": pz.chk.var("B"),
          **pz.chk.vars_for_axes("h", {"heads": 3, "dim": None}),
      },
      dtype=jnp.floating,
  )
  result = pz.chk.check_structure(value, spec)
  assert result["B"] == 2
  assert result["h"] == {"heads": 3, "dim": 4}
  wrong = pz.nx.wrap(jnp.zeros((2, 5, 4)), "batch", "heads", "dim")
  with pytest.raises(pz.chk.StructureMismatchError):
    pz.chk.check_structure(wrong, spec)


def test_tree_manipulation_utilities():
  tree = {"a": 1, "b": [2, 3]}
  sel = pz.select(tree).at(lambda t: t["b"][1])
  assert isinstance(sel, pz.Selection)
  assert sel.set(30) == {"a": 1, "b": [2, 30]}
  left, right = pz.select(tree).at(lambda t: t["b"]).partition()
  assert isinstance(left["a"], pz.NotInThisPartition)
  assert isinstance(right["b"], pz.NotInThisPartition)
  assert pz.combine(left, right) == tree
  model = pz.nn.Sequential([pz.nn.Identity(), pz.nn.Elementwise(jnp.abs)])
  (keypath,) = (
      pz.select(model).at_instances_of(pz.nn.Elementwise).get_keypaths()
  )
  assert pz.pretty_keystr(keypath, model) == "Sequential.sublayers[1]"


def test_visualization_helpers_outside_ipython():
  with pytest.raises(RuntimeError, match="Cannot use `show` outside of IPython"):
    pz.show("hello", pz.nx.wrap(jnp.zeros(2)))
  with pytest.raises(RuntimeError, match="outside of IPython"):
    pz.ts.register_as_default()
  figure = pz.ts.render_array(pz.nx.wrap(jnp.arange(6.0).reshape(2, 3), "a", "b"))
  assert figure._repr_html_()  # pylint: disable=protected-access


def test_context_management():
  assert pz.enable_interactive_context() is None
  with pytest.raises(
      RuntimeError, match="Disabling interactive context is no longer supported"
  ):
    pz.disable_interactive_context()
  value = pz.ContextualValue(initial_value=1, module=__name__, qualname="v")
  assert value.get() == 1
  with value.set_scoped(2):
    assert value.get() == 2
  assert value.get() == 1


def test_dataclass_and_struct_utilities():

  @pz.pytree_dataclass
  class Point(pz.Struct):
    x: jax.Array
    label: str = dataclasses.field(metadata={"pytree_node": False})

  assert pz.is_pytree_dataclass_type(Point)
  assert not pz.is_pytree_dataclass_type(dict)
  fields = {f.name: f for f in dataclasses.fields(Point)}
  assert pz.is_pytree_node_field(fields["x"])
  assert not pz.is_pytree_node_field(fields["label"])
  assert pz.init_takes_fields(Point)
  p = pz.dataclass_from_attributes(Point, x=jnp.ones(2), label="p")
  assert isinstance(p, Point) and p.label == "p"
  with pytest.raises(ValueError, match="Incorrect fields provided"):
    pz.dataclass_from_attributes(Point, x=1)
  leaves, treedef = jax.tree_util.tree_flatten(p)
  assert len(leaves) == 1
  assert jax.tree_util.tree_unflatten(treedef, leaves).label == "p"
  assert dataclasses.is_dataclass(pz.StructStaticMetadata)

  with pytest.raises(pz.PyTreeDataclassSafetyError):

    @pz.pytree_dataclass
    class BadOrder(Point):  # pylint: disable=unused-variable
      y: int = 0


def test_variable_labels_and_scopes():
  with pz.scoped_auto_state_var_labels(group="g"):
    a = pz.StateVariable(0)
    b = pz.StateVariable(1)
  assert a.label == pz.ScopedStateVarLabel(group="g", index=0)
  assert b.label == pz.ScopedStateVarLabel(group="g", index=1)
  c = pz.StateVariable(2)
  assert c.label == pz.AutoStateVarLabel(var_id=id(c))
  # Two different variables with the same label conflict when unbound.
  d = pz.StateVariable(3, label="same")
  e = pz.StateVariable(4, label="same")
  with pytest.raises(pz.VariableConflictError):
    pz.unbind_variables([d, e])
  with pytest.raises(pz.UnboundVariableError):
    _ = pz.StateVariableSlot("same").value
  assert isinstance(d, pz.AbstractVariable)
  assert isinstance(d.freeze(), pz.AbstractVariableValue)
  assert isinstance(d.get_slot(), pz.AbstractVariableSlot)


# --- One-line behaviour descriptions of the listed layers.


def _x() -> pz.nx.NamedArray:
  return pz.nx.wrap(
      jnp.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]]), "batch", "features"
  )


def _np(arr: pz.nx.NamedArray) -> np.ndarray:
  return np.asarray(arr.unwrap("batch", "features"))


class TestListedLayerBehaviour:

  def test_combinators(self):
    x = _x()
    double = pz.nn.ConstantRescale(2.0)
    # "A residual block, which runs its sublayers then adds the input."
    np.testing.assert_allclose(_np(pz.nn.Residual(double)(x)), 3 * _np(x))
    # "additive / multiplicative interactions between branches"
    branches = [double, pz.nn.Elementwise(jnp.abs)]
    np.testing.assert_allclose(
        _np(pz.nn.BranchAndAddTogether(branches)(x)),
        2 * _np(x) + np.abs(_np(x)),
    )
    np.testing.assert_allclose(
        _np(pz.nn.BranchAndMultiplyTogether(branches)(x)),
        2 * _np(x) * np.abs(_np(x)),
    )
    # "A group of layers to call sequentially" / "names ... a sequence".
    seq = pz.nn.Sequential([double, pz.nn.Elementwise(jnp.abs)])
    np.testing.assert_allclose(_np(seq(x)), np.abs(2 * _np(x)))
    group = pz.nn.NamedGroup("g", [double, pz.nn.Elementwise(jnp.abs)])
    np.testing.assert_allclose(_np(group(x)), np.abs(2 * _np(x)))
    assert pz.nn.Identity()(x) is x

  def test_grouping_utilities(self):
    inner = pz.nn.Sequential([pz.nn.Identity()])
    outer = pz.nn.Sequential([inner, pz.nn.NamedGroup("g", [])])
    assert pz.nn.is_anonymous_sequential(inner)
    assert not pz.nn.is_anonymous_sequential(pz.nn.NamedGroup("g", []))
    assert pz.nn.is_sequential_or_named(pz.nn.NamedGroup("g", []))
    flat = pz.nn.inline_anonymous_sequentials(outer)
    assert [type(l) for l in flat.sublayers] == [
        pz.nn.Identity, pz.nn.NamedGroup
    ]

  def test_checked_sequential_and_check_structure(self):
    spec = pz.chk.ArraySpec(
        named_shape={"batch": pz.chk.var("B"), "features": 3},
        dtype=jnp.floating,
    )
    checked = pz.nn.CheckedSequential(
        input_like=spec, output_like=spec, sublayers=[pz.nn.Identity()]
    )
    assert checked(_x()) is not None
    bad = pz.nx.wrap(jnp.zeros((2, 4)), "batch", "features")
    with pytest.raises(pz.chk.StructureMismatchError):
      checked(bad)
    with pytest.raises(pz.chk.StructureMismatchError):
      pz.nn.CheckStructure(spec)(bad)

  def test_basic_operations(self):
    x = _x()
    soft = pz.nn.Softmax("features")(x)
    np.testing.assert_allclose(
        _np(soft), jax.nn.softmax(_np(x), axis=-1), rtol=1e-6
    )
    assert pz.nn.CastToDType(jnp.bfloat16)(x).dtype == jnp.bfloat16
    renamed = pz.nn.RenameAxes(old="features", new="f")(x)
    assert set(renamed.named_shape) == {"batch", "f"}
    einsum = pz.nn.NamedEinsum(
        (("batch", "features"), ("features", "out")), ("batch", "out")
    )
    w = pz.nx.wrap(jnp.ones((3, 2)), "features", "out")
    np.testing.assert_allclose(
        einsum((x, w)).unwrap("batch", "out"), _np(x) @ np.ones((3, 2))
    )
    np.testing.assert_allclose(
        pz.nn.contract("features", x, w).unwrap("batch", "out"),
        _np(x) @ np.ones((3, 2)),
    )

  def test_dropout_helpers(self):
    assert isinstance(pz.nn.maybe_dropout(None), pz.nn.DisabledDropout)
    assert isinstance(pz.nn.maybe_dropout(0.1), pz.nn.StochasticDropout)
    x = _x()
    assert pz.nn.DisabledDropout(0.5, ())(x) is x

  def test_layer_stack_runs_identical_layers_in_sequence(self):
    def builder(init_base_rng, name):
      return pz.nn.Linear.from_config(
          name=name,
          init_base_rng=init_base_rng,
          input_axes={"features": 3},
          output_axes={"features_out": 3},
          rename_outputs_if_necessary=False,
      )

    def block(init_base_rng, name):
      return pz.nn.Sequential([
          builder(init_base_rng, name),
          pz.nn.RenameAxes(old="features_out", new="features"),
      ])

    stack = pz.nn.LayerStack.from_sublayer_builder(
        builder=block,
        stack_axis="layers",
        stack_axis_size=2,
        init_base_rng=jax.random.key(0),
        builder_kwargs={"name": "stack"},
    )
    (param,) = pz.unbind_params(stack)[1]
    assert param.value.named_shape["layers"] == 2
    x = _x()
    out = stack(x)
    w = param.value.unwrap("layers", "features", "features_out")
    np.testing.assert_allclose(
        _np(out), _np(x) @ np.asarray(w[0]) @ np.asarray(w[1]),
        rtol=1e-5, atol=1e-6,
    )
    (key,) = [
        k for k in pz.select(stack).at_instances_of(pz.Parameter)
        .get_keypaths()[0]
        if isinstance(k, pz.nn.LayerStackGetAttrKey)
    ]
    assert pz.nn.layerstack_axes_from_keypath((key,)) == {"layers": 2}
