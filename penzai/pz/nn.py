"""Alias namespace `pz.nn`: re-exports of the public `penzai.nn` layer API."""

# pylint: disable=g-importing-member,unused-import

from penzai.nn.attention import (
    ApplyCausalAttentionMask as ApplyCausalAttentionMask,
    ApplyCausalSlidingWindowAttentionMask as ApplyCausalSlidingWindowAttentionMask,
    ApplyExplicitAttentionMask as ApplyExplicitAttentionMask,
    Attention as Attention,
    KVCachingAttention as KVCachingAttention,
)
from penzai.nn.basic_ops import (
    CastToDType as CastToDType,
    Elementwise as Elementwise,
    Softmax as Softmax,
    TanhSoftCap as TanhSoftCap,
)
from penzai.nn.combinators import (
    BranchAndAddTogether as BranchAndAddTogether,
    BranchAndMultiplyTogether as BranchAndMultiplyTogether,
    Residual as Residual,
)
from penzai.nn.dropout import (
    DisabledDropout as DisabledDropout,
    StochasticDropout as StochasticDropout,
    maybe_dropout as maybe_dropout,
)
from penzai.nn.embeddings import (
    ApplyRoPE as ApplyRoPE,
    ApplyRoPEToSubset as ApplyRoPEToSubset,
    EmbeddingDecode as EmbeddingDecode,
    EmbeddingLookup as EmbeddingLookup,
    EmbeddingTable as EmbeddingTable,
)
from penzai.nn.grouping import (
    CheckedSequential as CheckedSequential,
    CheckStructure as CheckStructure,
    Identity as Identity,
    NamedGroup as NamedGroup,
    Sequential as Sequential,
    inline_anonymous_sequentials as inline_anonymous_sequentials,
    inline_groups as inline_groups,
    is_anonymous_sequential as is_anonymous_sequential,
    is_sequential_or_named as is_sequential_or_named,
)
from penzai.nn.layer import Layer as Layer
from penzai.nn.layer_stack import (
    LayerStack as LayerStack,
    LayerStackGetAttrKey as LayerStackGetAttrKey,
    LayerStackVarBehavior as LayerStackVarBehavior,
    layerstack_axes_from_keypath as layerstack_axes_from_keypath,
)
from penzai.nn.linear_and_affine import (
    AddBias as AddBias,
    Affine as Affine,
    ConstantRescale as ConstantRescale,
    Linear as Linear,
    LinearInPlace as LinearInPlace,
    LinearOperatorWeightInitializer as LinearOperatorWeightInitializer,
    NamedEinsum as NamedEinsum,
    RenameAxes as RenameAxes,
    constant_initializer as constant_initializer,
    contract as contract,
    variance_scaling_initializer as variance_scaling_initializer,
    xavier_normal_initializer as xavier_normal_initializer,
    xavier_uniform_initializer as xavier_uniform_initializer,
    zero_initializer as zero_initializer,
)
from penzai.nn.parameters import (
    ParameterLike as ParameterLike,
    assert_no_parameter_slots as assert_no_parameter_slots,
    derive_param_key as derive_param_key,
    make_parameter as make_parameter,
)
from penzai.nn.standardization import (
    LayerNorm as LayerNorm,
    RMSLayerNorm as RMSLayerNorm,
    RMSStandardize as RMSStandardize,
    Standardize as Standardize,
)
