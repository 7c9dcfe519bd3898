"""Tests for the `pz.nn` alias namespace (penzai/pz/nn.py)."""

import importlib

from penzai import pz

_EXPECTED = {
    "penzai.nn.attention": [
        "ApplyExplicitAttentionMask",
        "ApplyCausalAttentionMask",
        "ApplyCausalSlidingWindowAttentionMask",
        "Attention",
        "KVCachingAttention",
    ],
    "penzai.nn.basic_ops": [
        "CastToDType",
        "Elementwise",
        "Softmax",
        "TanhSoftCap",
    ],
    "penzai.nn.combinators": [
        "Residual",
        "BranchAndAddTogether",
        "BranchAndMultiplyTogether",
    ],
    "penzai.nn.dropout": [
        "DisabledDropout",
        "maybe_dropout",
        "StochasticDropout",
    ],
    "penzai.nn.embeddings": [
        "EmbeddingTable",
        "EmbeddingLookup",
        "EmbeddingDecode",
        "ApplyRoPE",
        "ApplyRoPEToSubset",
    ],
    "penzai.nn.grouping": [
        "CheckedSequential",
        "CheckStructure",
        "Identity",
        "inline_anonymous_sequentials",
        "inline_groups",
        "is_anonymous_sequential",
        "is_sequential_or_named",
        "NamedGroup",
        "Sequential",
    ],
    "penzai.nn.layer": ["Layer"],
    "penzai.nn.layer_stack": [
        "LayerStackVarBehavior",
        "LayerStackGetAttrKey",
        "LayerStack",
        "layerstack_axes_from_keypath",
    ],
    "penzai.nn.linear_and_affine": [
        "AddBias",
        "ConstantRescale",
        "NamedEinsum",
        "Affine",
        "Linear",
        "LinearOperatorWeightInitializer",
        "LinearInPlace",
        "RenameAxes",
        "contract",
        "variance_scaling_initializer",
        "xavier_normal_initializer",
        "xavier_uniform_initializer",
        "constant_initializer",
        "zero_initializer",
    ],
    "penzai.nn.parameters": [
        "ParameterLike",
        "derive_param_key",
        "make_parameter",
        "assert_no_parameter_slots",
    ],
    "penzai.nn.standardization": [
        "LayerNorm",
        "Standardize",
        "RMSLayerNorm",
        "RMSStandardize",
    ],
}


def test_pz_nn_exports_exactly_the_documented_names():
  public = {name for name in dir(pz.nn) if not name.startswith("_")}
  expected = {name for names in _EXPECTED.values() for name in names}
  assert public == expected


def test_pz_nn_names_are_the_module_objects():
  for module_name, names in _EXPECTED.items():
    module = importlib.import_module(module_name)
    for name in names:
      assert getattr(pz.nn, name) is getattr(module, name), name


def test_penzai_nn_package_is_empty():
  import penzai.nn

  assert not [
      n
      for n in vars(penzai.nn)
      if not n.startswith("_")
      and n not in {name.split(".")[-1] for name in _EXPECTED}
  ]
