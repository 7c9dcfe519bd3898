"""Tests for the deprecated `penzai.experimental.v2` redirector package."""

import importlib
import sys
import types

import pytest

import penzai.core.variables
import penzai.nn.layer
import penzai.pz

WARNING = (
    "Accessing Penzai's V2 API from `penzai.experimental.v2` is deprecated. As"
    " of the 0.2.0 release, the V2 API is now available in the top-level"
    " `penzai` namespace. Please use `penzai` directly instead."
)


@pytest.fixture(name="v2")
def fresh_v2_import():
  """Imports penzai.experimental.v2 afresh, checking the warning."""
  for name in list(sys.modules):
    if name.startswith("penzai.experimental.v2"):
      del sys.modules[name]
  with pytest.warns(UserWarning) as record:
    module = importlib.import_module("penzai.experimental.v2")
  assert [str(w.message) for w in record] == [WARNING]
  return module


def test_package_attributes(v2):
  assert {n for n in dir(v2) if not n.startswith("__")} == {
      "_make_redirector",
      "_warnings",
      "annotations",
      "core",
      "models",
      "nn",
      "pz",
      "toolshed",
  }
  import penzai.experimental

  assert {n for n in dir(penzai.experimental) if not n.startswith("__")} == {"v2"}


def test_pz_stub_forwards(v2):
  from penzai.experimental.v2 import pz  # pylint: disable=g-import-not-at-top

  assert isinstance(pz, types.ModuleType)
  assert sys.modules["penzai.experimental.v2.pz"] is pz
  assert pz.__doc__ == "Redirector module for penzai.experimental.v2.pz."
  assert pz.Struct is penzai.pz.Struct
  assert pz.nn.Linear is penzai.pz.nn.Linear
  assert pz.ts.render_to_text is penzai.pz.ts.render_to_text
  assert dir(pz) == dir(penzai.pz)
  with pytest.raises(
      AttributeError,
      match="module 'penzai.experimental.v2.pz' has no attribute '__foo__'",
  ):
    pz.__foo__  # pylint: disable=pointless-statement
  with pytest.raises(AttributeError):
    pz.does_not_exist  # pylint: disable=pointless-statement


def test_module_stubs(v2):
  from penzai.experimental.v2.core import variables  # pylint: disable=g-import-not-at-top
  from penzai.experimental.v2.nn import layer  # pylint: disable=g-import-not-at-top

  assert variables.Parameter is penzai.core.variables.Parameter
  assert layer.Layer is penzai.nn.layer.Layer
  assert v2.core.variables is variables
  assert sys.modules["penzai.experimental.v2.nn.layer"] is layer


def test_stub_tree_shape(v2):
  assert {n for n in dir(v2.core) if not n.startswith("__")} == {
      "auto_order_types",
      "random_stream",
      "variables",
  }
  assert {n for n in dir(v2.nn) if not n.startswith("__")} == {
      "attention",
      "basic_ops",
      "combinators",
      "dropout",
      "embeddings",
      "grouping",
      "layer",
      "layer_stack",
      "linear_and_affine",
      "parameters",
      "standardization",
  }
  assert {n for n in dir(v2.toolshed) if not n.startswith("__")} == {
      "basic_training",
      "gradient_checkpointing",
      "isolate_submodel",
      "jit_wrapper",
      "lora",
      "model_rewiring",
      "save_intermediates",
      "sharding_util",
      "unflaxify",
  }
  variants = v2.models.transformer.variants
  assert {n for n in dir(variants) if not n.startswith("__")} == {
      "",
      "gemma",
      "gpt_neox",
      "llamalike_common",
      "llama",
      "mistral",
  }
  assert getattr(variants, "") is sys.modules[
      "penzai.experimental.v2.models.transformer.variants."
  ]
  assert {n for n in dir(v2.models.transformer) if not n.startswith("__")} == {
      "model_parts",
      "sampling_mode",
      "simple_decoding_loop",
      "variants",
  }
  assert v2.models.simple_mlp.__name__ == "penzai.experimental.v2.models.simple_mlp"
  with pytest.raises(AttributeError):
    v2.core.not_a_stub  # pylint: disable=pointless-statement
