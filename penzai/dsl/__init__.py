"""`penzai.dsl`: a typed, schema-checked language for declaring Penzai models.

    from penzai import dsl
    spec = dsl.load("examples/specs/mlp.yaml")     # raises dsl.SpecError
    report = dsl.check(spec)                        # static named-axis shapes
    model = dsl.build(spec, init_base_rng=jax.random.key(0))
"""

from __future__ import annotations

from penzai.dsl import builtins as _builtins  # noqa: F401  (registers built-in node types)
from penzai.dsl.builder import build
from penzai.dsl.checker import CheckReport, NodeReport, check
from penzai.dsl.document import ModelSpec, TensorSpec, load, loads, validate_data
from penzai.dsl.errors import ShapeError, SpecError, SpecIssue
from penzai.dsl.nodes import (
    MLP, AddBias, Affine, ApplyCausalAttentionMask, ApplyCausalSlidingWindowAttentionMask,
    ApplyExplicitAttentionMask, ApplyRoPE, ApplyRoPEToSubset, Attention, BranchAndAddTogether,
    BranchAndMultiplyTogether, CastToDType, ConstantRescale, Dropout, Elementwise, EmbeddingDecode,
    EmbeddingLookup, Identity, LayerNode, LayerNorm, LayerSpec, Linear, NamedEinsum, NamedGroup,
    NodeBase, Ref, RenameAxes, Repeat, Residual, RMSLayerNorm, RMSStandardize, Sequential, Softmax,
    Standardize, TanhSoftCap,
)
from penzai.dsl.registry import register_activation, register_layer, unregister_layer
from penzai.dsl.serialize import dumps, to_data
from penzai.dsl.shapes import TensorShape
from penzai.dsl.recover import spec_of
from penzai.dsl.sweeps import Variant, sweep
from penzai.dsl.transformer_nodes import (
    SlidingWindow, TransformerGemma, TransformerGPTNeoX, TransformerLlama, TransformerMistral,
)

__all__ = [
    "AddBias", "Affine", "ApplyCausalAttentionMask", "ApplyCausalSlidingWindowAttentionMask",
    "ApplyExplicitAttentionMask", "ApplyRoPE", "ApplyRoPEToSubset", "Attention",
    "BranchAndAddTogether", "BranchAndMultiplyTogether", "CastToDType", "CheckReport",
    "ConstantRescale", "Dropout", "Elementwise", "EmbeddingDecode", "EmbeddingLookup", "Identity",
    "LayerNode", "LayerNorm", "LayerSpec", "Linear", "MLP", "ModelSpec", "NamedEinsum", "NamedGroup",
    "NodeBase", "NodeReport", "Ref", "RenameAxes", "Repeat", "Residual", "RMSLayerNorm",
    "RMSStandardize", "Sequential", "ShapeError", "SlidingWindow", "Softmax", "SpecError",
    "SpecIssue", "Standardize", "TanhSoftCap", "TensorShape", "TensorSpec", "TransformerGemma",
    "TransformerGPTNeoX", "TransformerLlama", "TransformerMistral", "Variant", "build", "check",
    "dumps", "load", "loads", "register_activation", "register_layer", "spec_of", "sweep",
    "to_data", "unregister_layer", "validate_data",
]
