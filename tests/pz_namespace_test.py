"""Tests for the `pz`, `pz.ts` alias namespaces and the treescope compat package."""

import inspect
import subprocess
import sys
import typing

import pytest
import treescope

import penzai
from penzai import pz
from penzai.core import named_axes
from penzai.core import shapecheck
from penzai.core import variables
from penzai.treescope import _compatibility_setup
from penzai.treescope import formatting_util
from penzai.treescope import repr_lib

PZ_NAMES = {
    "AbstractVariable": "penzai.core.variables",
    "AbstractVariableSlot": "penzai.core.variables",
    "AbstractVariableValue": "penzai.core.variables",
    "AutoOrderedAcrossTypes": "penzai.core.auto_order_types",
    "AutoStateVarLabel": "penzai.core.variables",
    "ContextualValue": "treescope.context",
    "NotInThisPartition": "penzai.core.partitioning",
    "Parameter": "penzai.core.variables",
    "ParameterSlot": "penzai.core.variables",
    "ParameterValue": "penzai.core.variables",
    "PyTreeDataclassSafetyError": "penzai.core.struct",
    "RandomStream": "penzai.core.random_stream",
    "ScopedStateVarLabel": "penzai.core.variables",
    "Selection": "penzai.core.selectors",
    "StateVariable": "penzai.core.variables",
    "StateVariableSlot": "penzai.core.variables",
    "StateVariableValue": "penzai.core.variables",
    "Struct": "penzai.core.struct",
    "StructStaticMetadata": "penzai.core.struct",
    "UnboundVariableError": "penzai.core.variables",
    "VariableConflictError": "penzai.core.variables",
    "VariableLabel": None,
    "bind_variables": "penzai.core.variables",
    "chk": None,
    "color_from_string": "treescope.formatting_util",
    "combine": "penzai.core.partitioning",
    "dataclass_from_attributes": "treescope.dataclass_util",
    "disable_interactive_context": "penzai.treescope._compatibility_setup",
    "enable_interactive_context": "penzai.treescope._compatibility_setup",
    "freeze_params": "penzai.core.variables",
    "freeze_state_vars": "penzai.core.variables",
    "freeze_variables": "penzai.core.variables",
    "init_takes_fields": "treescope.dataclass_util",
    "is_pytree_dataclass_type": "penzai.core.struct",
    "is_pytree_node_field": "penzai.core.struct",
    "nn": None,
    "nx": None,
    "oklch_color": "treescope.formatting_util",
    "pretty_keystr": "penzai.core.tree_util",
    "pytree_dataclass": "penzai.core.struct",
    "scoped_auto_state_var_labels": "penzai.core.variables",
    "select": "penzai.core.selectors",
    "show": "penzai.treescope._compatibility_setup",
    "slice": None,
    "ts": None,
    "unbind_params": "penzai.core.variables",
    "unbind_state_vars": "penzai.core.variables",
    "unbind_variables": "penzai.core.variables",
    "variable_jit": "penzai.core.variables",
}

TS_FROM_TREESCOPE = [
    "ArrayAutovisualizer",
    "active_autovisualizer",
    "active_expansion_strategy",
    "active_renderer",
    "Autovisualizer",
    "ChildAutovisualizer",
    "default_diverging_colormap",
    "default_magic_autovisualizer",
    "default_sequential_colormap",
    "integer_digitbox",
    "IPythonVisualization",
    "register_autovisualize_magic",
    "register_context_manager_magic",
    "render_array_sharding",
    "render_array",
    "render_to_html",
    "render_to_text",
    "using_expansion_strategy",
]
TS_FROM_FIGURES = [
    "inline",
    "indented",
    "with_font_size",
    "with_color",
    "bolded",
    "styled",
    "text_on_color",
]
TS_FROM_COMPAT = ["display", "register_as_default", "basic_interactive_setup"]


def public_names(module) -> set[str]:
  return {name for name in dir(module) if not name.startswith("__")}


def test_pz_has_exactly_the_listed_names():
  assert len(PZ_NAMES) == 49
  assert public_names(pz) == set(PZ_NAMES)
  assert "typing" not in dir(pz)


@pytest.mark.parametrize("name", sorted(n for n, m in PZ_NAMES.items() if m))
def test_pz_name_origins(name):
  module_name = PZ_NAMES[name]
  obj = getattr(pz, name)
  assert obj is getattr(sys.modules[module_name], name)
  if name != "init_takes_fields":  # functools.cache wrapper
    assert obj.__module__ == module_name


def test_pz_submodule_aliases():
  assert pz.nx is named_axes
  assert pz.chk is shapecheck
  assert pz.nn is sys.modules["penzai.pz.nn"]
  assert pz.ts is sys.modules["penzai.pz.ts"]
  assert pz.slice is sys.modules["penzai.core.syntactic_sugar"].slice
  assert pz.VariableLabel is variables.VariableLabel
  assert pz.show is not treescope.show
  assert pz.ContextualValue is treescope.context.ContextualValue


def test_pz_ts_names():
  expected = set(TS_FROM_TREESCOPE + TS_FROM_FIGURES + TS_FROM_COMPAT)
  expected.add("vocab_autovisualizer")
  assert len(expected) == 29
  assert public_names(pz.ts) == expected
  for name in TS_FROM_TREESCOPE:
    assert getattr(pz.ts, name) is getattr(treescope, name), name
  for name in TS_FROM_FIGURES:
    assert getattr(pz.ts, name) is getattr(treescope.figures, name), name
  for name in TS_FROM_COMPAT:
    assert getattr(pz.ts, name) is getattr(_compatibility_setup, name), name
  assert pz.ts.vocab_autovisualizer == treescope.ArrayAutovisualizer.for_tokenizer


def test_compat_signatures():
  assert str(inspect.signature(pz.ts.display)) == (
      "(value: 'Any', ignore_exceptions: 'bool' = False, roundtrip_mode:"
      " 'bool' = False)"
  )
  params = inspect.signature(pz.ts.register_as_default).parameters
  assert [(p.name, p.default) for p in params.values()] == [
      ("streaming", True),
      ("compress_html", True),
  ]
  params = inspect.signature(pz.ts.basic_interactive_setup).parameters
  assert [(p.name, p.default) for p in params.values()] == [
      ("autovisualize_arrays", True)
  ]
  params = inspect.signature(pz.show).parameters
  assert [(p.name, p.kind.name, p.default) for p in params.values()] == [
      ("args", "VAR_POSITIONAL", inspect.Parameter.empty),
      ("wrap", "KEYWORD_ONLY", False),
      ("space_separated", "KEYWORD_ONLY", True),
  ]


def test_interactive_context_functions():
  assert pz.enable_interactive_context() is None
  with pytest.raises(
      RuntimeError, match="Disabling interactive context is no longer supported."
  ):
    pz.disable_interactive_context()


def test_ipython_only_functions_fail_outside_ipython():
  with pytest.raises(RuntimeError, match="Cannot use `show` outside of IPython."):
    pz.show("a", 1)
  with pytest.raises(RuntimeError, match="Cannot use `display` outside of IPython."):
    pz.ts.display(1)
  with pytest.raises(
      RuntimeError, match="Cannot use `register_as_default` outside of IPython."
  ):
    pz.ts.register_as_default()
  with pytest.raises(
      RuntimeError, match="Cannot use `register_as_default` outside of IPython."
  ):
    pz.ts.basic_interactive_setup()


def test_legacy_penzai_repr_support():
  class Legacy:

    def __penzai_repr__(self, path, subtree_renderer):
      return treescope.rendering_parts.text("<legacy object>")

  renderer = _compatibility_setup.extended_renderer()
  assert renderer.to_text([Legacy(), 1]) == "[<legacy object>, 1]"
  assert "<legacy object>" not in treescope.render_to_text([Legacy()])
  assert _compatibility_setup.extended_renderer().handlers.count(
      renderer.handlers[0]
  ) == 1


def test_treescope_helpers():
  assert pz.oklch_color(0.5, 0.1, 120) == "oklch(0.5 0.1 120 / 1.0)"
  assert pz.color_from_string("abc") == pz.color_from_string("abc")
  assert pz.color_from_string("abc").startswith("oklch(0.785 0.103 ")

  @pz.pytree_dataclass
  class Foo(pz.Struct):
    a: int

  assert pz.init_takes_fields(Foo)
  assert pz.dataclass_from_attributes(Foo, a=2) == Foo(2)
  with pytest.raises(ValueError, match="Incorrect fields provided"):
    pz.dataclass_from_attributes(Foo, b=2)


def test_compat_modules_reexport_treescope():
  assert formatting_util.color_from_string is treescope.formatting_util.color_from_string
  assert formatting_util.oklch_color is treescope.formatting_util.oklch_color
  assert (
      repr_lib.render_object_constructor
      is treescope.repr_lib.render_object_constructor
  )


def test_import_side_effects():
  code = (
      "import sys, penzai\n"
      "print(sorted(n for n in dir(penzai) if not n.startswith('__')))\n"
      "import penzai.core\n"
      "print(sorted(n for n in dir(penzai.core) if not n.startswith('_')))\n"
      "import penzai.pz\n"
      "mods = ['penzai.core.' + m for m in ('auto_order_types', 'named_axes',"
      " 'partitioning', 'random_stream', 'selectors', 'shapecheck', 'struct',"
      " 'syntactic_sugar', 'tree_util', 'variables')]\n"
      "mods += ['penzai.treescope', 'penzai.treescope.formatting_util',"
      " 'penzai.treescope.repr_lib', 'penzai.treescope._compatibility_setup',"
      " 'treescope', 'penzai.pz.nn', 'penzai.pz.ts', 'penzai.nn.layer']\n"
      "print([m for m in mods if m not in sys.modules])\n"
      "print(penzai.__version__)\n"
      "print(sorted(m for m in sys.modules if '_treescope_handlers.' in m))\n"
  )
  out = subprocess.run(
      [sys.executable, "-c", code],
      capture_output=True,
      text=True,
      check=True,
      env={"JAX_PLATFORMS": "cpu", "PATH": ""},
  ).stdout.splitlines()
  assert out[0] == "[]"
  assert out[1] == (
      "['named_axes', 'partitioning', 'selectors', 'shapecheck', 'struct',"
      " 'syntactic_sugar', 'tree_util']"
  )
  assert out[2] == "[]"
  assert out[3] == "0.2.5" == penzai.__version__
  assert out[4] == "[]"  # handlers are imported lazily, only when rendering


def test_chk_module_attributes():
  for name in [
      "StructureAnnotation", "Wildcard", "ANY", "RemainingAxisPlaceholder",
      "DimVar", "MultiDimVar", "KnownDim", "var", "vars_for_axes", "ArraySpec",
      "MatchResult", "StructureMismatchError", "check_structure",
      "DimensionVariableSubstitution", "get_dimension_variables",
      "full_substitute_dimension_variables", "as_array_structure", "Any",
      "Collection", "Mapping", "collections", "dataclasses", "itertools",
      "jax", "jnp", "np", "named_axes", "ordered_set", "struct", "typing",
      "annotations", "_Binding", "_PositionalConstraint", "_NamedConstraint",
      "_UnsatisfiedConstraint", "_MatchConstraint", "_abstract_leaf",
      "_match_leaf", "_try_match_one", "_positional_inline_multidimvars",
      "_named_inline_multidimvars", "_show_dim", "_summarize_pattern",
  ]:
    assert hasattr(pz.chk, name), name
  assert pz.chk.StructureAnnotation is typing.Any
