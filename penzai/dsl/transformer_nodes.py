"""The `Transformer` node: a whole language model from one of the transformer variants.

`type: Transformer` picks its spec class by `variant` (`llama`, `mistral`,
`gemma` — all "llamalike" — or `gpt_neox`); the remaining fields are that
variant's config fields, with per-variant defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from penzai.dsl.nodes import FloatDType, LayerNode


class SlidingWindow(BaseModel):
  """A causal sliding-window attention layer type."""

  model_config = ConfigDict(extra="forbid", frozen=True)
  window_size: int = Field(description="Window length (as in AttentionTypeSlidingWindowCausal).", ge=1)


AttentionTypeSpec = Literal["global"] | SlidingWindow


class _LlamalikeFields(LayerNode):
  """Fields of `LlamalikeTransformerConfig`."""

  type: Literal["Transformer"] = "Transformer"
  num_kv_heads: int = Field(description="Key/value heads.", ge=1)
  query_head_multiplier: int = Field(description="Query heads per key/value head.", ge=1)
  embedding_dim: int = Field(description="Residual stream width.", ge=1)
  projection_dim: int = Field(description="Per-head query/key/value width (even).", ge=2)
  mlp_hidden_dim: int = Field(description="Hidden width of the gated MLP.", ge=1)
  num_decoder_blocks: int = Field(description="Number of transformer blocks.", ge=1)
  vocab_size: int = Field(description="Vocabulary size.", ge=1)
  mlp_variant: Literal["geglu_exact", "geglu_approx", "swiglu"] = Field(
      "swiglu", description="Gated MLP activation."
  )
  tie_embedder_and_logits: bool = Field(
      False, description="Decode with the embedding table (also scales embeddings by sqrt(E))."
  )
  rope_wavelength: float = Field(10_000.0, description="RoPE maximum wavelength.", gt=0)
  rms_norm_eps: float = Field(1e-6, description="RMS norm epsilon.", ge=0)
  attention_type: AttentionTypeSpec | list[AttentionTypeSpec] = Field(
      "global",
      description="`global`, `{window_size: N}`, or a list cycled over the blocks.",
  )
  use_post_attn_norm: bool = Field(False, description="RMS norm after attention.")
  use_post_ffw_norm: bool = Field(False, description="RMS norm after the MLP.")
  final_logit_softcap: float | None = Field(None, description="Tanh soft cap of the logits.")
  attn_logits_soft_cap: float | None = Field(None, description="Tanh soft cap of attention logits.")
  query_scaling_factor: float | Literal["default"] = Field(
      "default", description="Query scale (`default`: projection_dim ** -0.5)."
  )
  parameter_dtype: FloatDType = Field("float32", description="Parameter dtype.")
  activation_dtype: FloatDType = Field("float32", description="Activation dtype.")
  use_layer_stack: bool = Field(False, description="Build the blocks as one LayerStack.")
  use_qk_norm: bool = Field(False, description="RMS norm on queries and keys.")
  global_scale_factor: float | None = Field(None, description="RoPE scale factor of global layers.")
  local_rope_wavelength: float | None = Field(None, description="RoPE wavelength of sliding-window layers.")


class TransformerLlama(_LlamalikeFields):
  """A Llama-style decoder-only transformer (`variant: llama`)."""

  variant: Literal["llama"] = Field(description="Transformer family.")


class TransformerMistral(_LlamalikeFields):
  """A Mistral-style transformer (`variant: mistral`; sliding-window attention by default)."""

  variant: Literal["mistral"] = Field(description="Transformer family.")
  attention_type: AttentionTypeSpec | list[AttentionTypeSpec] = Field(
      SlidingWindow(window_size=4096),
      description="`global`, `{window_size: N}`, or a list cycled over the blocks.",
  )


class TransformerGemma(_LlamalikeFields):
  """A Gemma-style transformer (`variant: gemma`; GeGLU, tied embeddings by default)."""

  variant: Literal["gemma"] = Field(description="Transformer family.")
  mlp_variant: Literal["geglu_exact", "geglu_approx", "swiglu"] = Field(
      "geglu_approx", description="Gated MLP activation."
  )
  tie_embedder_and_logits: bool = Field(
      True, description="Decode with the embedding table (also scales embeddings by sqrt(E))."
  )


class TransformerGPTNeoX(LayerNode):
  """A GPT-NeoX transformer (`variant: gpt_neox`): parallel residual, LayerNorm, partial RoPE."""

  type: Literal["Transformer"] = "Transformer"
  variant: Literal["gpt_neox"] = Field(description="Transformer family.")
  num_attention_heads: int = Field(description="Attention heads.", ge=1)
  embedding_dim: int = Field(description="Residual stream width.", ge=1)
  projection_dim: int = Field(description="Per-head width.", ge=2)
  mlp_hidden_dim: int = Field(description="MLP hidden width.", ge=1)
  num_decoder_blocks: int = Field(description="Number of blocks.", ge=1)
  vocab_size: int = Field(description="Vocabulary size.", ge=1)
  activation_fn: Literal["relu", "silu", "gelu_exact", "gelu_approx"] = Field(
      "gelu_exact", description="MLP activation."
  )
  rope_subset_size: int = Field(description="Rotated leading entries of each head (even).", ge=2)
  rope_wavelength: float = Field(10_000.0, description="RoPE maximum wavelength.", gt=0)
  layernorm_epsilon: float = Field(1e-5, description="LayerNorm epsilon.", ge=0)
  parameter_dtype: FloatDType = Field("float32", description="Parameter dtype.")
  activation_dtype: FloatDType = Field("float32", description="Activation dtype.")
  use_layer_stack: bool = Field(False, description="Build the blocks as one LayerStack.")


TRANSFORMER_VARIANTS: dict[str, type[LayerNode]] = {
    "llama": TransformerLlama,
    "mistral": TransformerMistral,
    "gemma": TransformerGemma,
    "gpt_neox": TransformerGPTNeoX,
}
