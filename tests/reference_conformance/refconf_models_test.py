"""Reference conformance: signatures, fields and bases in `penzai.models` (models.md)."""

from __future__ import annotations

import types

import pytest

import refconf_harness as h

M = "penzai.models"
MP = f"{M}.transformer.model_parts"
LC = f"{M}.transformer.variants.llamalike_common"
GN = f"{M}.transformer.variants.gpt_neox"
SM = f"{M}.transformer.sampling_mode"
SEQ = "penzai.nn.grouping:Sequential"
LAYER = "penzai.nn.layer:Layer"
BUILDER = "(name: str, init_base_rng: jax.Array | None, config: {cfg})"
HF_ARGS = (
    "(model: {typ}, upcast_activations_to_float32: bool = False,"
    " use_layer_stack: bool = False) -> TransformerLM"
)

CALLABLES: list[tuple[str, str]] = [
    (
        f"{M}.simple_mlp:MLP.from_config",
        "(cls, init_base_rng: jax.Array | None, feature_sizes: list[int], name: str"
        " = 'mlp', activation_fn: Callable[[jax.Array], jax.Array] = jax.nn.relu,"
        " feature_axis: str = 'features') -> MLP",
    ),
    (
        f"{M}.simple_mlp:DropoutMLP.from_config",
        "(cls, init_base_rng: jax.Array | None, feature_sizes: list[int],"
        " drop_rate: float, name: str = 'dropout_mlp', activation_fn:"
        " Callable[[jax.Array], jax.Array] = jax.nn.relu, feature_axis: str ="
        " 'features') -> DropoutMLP",
    ),
    (f"{MP}:TransformerBlock.treescope_color", "(self)"),
    (
        f"{MP}:TransformerLM.__call__",
        "(self, tokens: NamedArray, *, token_positions: NamedArray | None = None,"
        " **side_inputs) -> NamedArray",
    ),
    (
        f"{LC}:build_llamalike_feedforward",
        BUILDER.format(cfg="LlamalikeTransformerConfig") + " -> TransformerFeedForward",
    ),
    (
        f"{LC}:build_llamalike_attention",
        "(name: str, init_base_rng: jax.Array | None, config:"
        " LlamalikeTransformerConfig, block_index: int | None = None) -> pz.nn.Attention",
    ),
    (
        f"{LC}:build_llamalike_block",
        "(name: str, init_base_rng: jax.Array | None, config:"
        " LlamalikeTransformerConfig, block_index: int | None = None) -> TransformerBlock",
    ),
    (
        f"{LC}:build_llamalike_transformer",
        "(config: LlamalikeTransformerConfig, init_base_rng: jax.Array | None ="
        " None, name: str = 'transformer') -> TransformerLM",
    ),
    (f"{LC}:llamalike_from_huggingface_model", HF_ARGS.format(typ="Any")),
    (
        f"{M}.transformer.variants.llama:llama_from_huggingface_model",
        HF_ARGS.format(typ="LlamaForCausalLM"),
    ),
    (
        f"{M}.transformer.variants.mistral:mistral_from_huggingface_model",
        HF_ARGS.format(typ="MistralForCausalLM"),
    ),
    (
        f"{GN}:build_gpt_neox_feedforward",
        BUILDER.format(cfg="GPTNeoXTransformerConfig") + " -> TransformerFeedForward",
    ),
    (
        f"{GN}:build_gpt_neox_attention",
        BUILDER.format(cfg="GPTNeoXTransformerConfig") + " -> pz.nn.Attention",
    ),
    (
        f"{GN}:build_gpt_neox_block",
        BUILDER.format(cfg="GPTNeoXTransformerConfig") + " -> TransformerBlock",
    ),
    (
        f"{GN}:build_gpt_neox_transformer",
        "(config: GPTNeoXTransformerConfig, init_base_rng: jax.Array | None ="
        " None, name: str = 'transformer') -> TransformerLM",
    ),
    (f"{GN}:gpt_neox_from_huggingface_model", HF_ARGS.format(typ="GPTNeoXForCausalLM")),
    (
        f"{M}.transformer.variants.gemma:_make_attention_layers_types",
        "(pattern: tuple[AttentionType, ...], *, num_layers: int) -> tuple[AttentionType, ...]",
    ),
    (
        f"{M}.transformer.variants.gemma:gemma_from_pretrained_checkpoint",
        "(ckpt_params: dict[str, Any], upcast_activations_to_float32: bool ="
        " False, use_layer_stack: bool = False, preset_name: Literal['gemma_2b',"
        " 'gemma_7b', 'gemma2_2b', 'gemma2_9b', 'gemma2_27b', 'gemma3_1b',"
        " 'gemma3_4b', 'gemma3_12b', 'gemma3_27b', 'auto'] = 'auto') -> TransformerLM",
    ),
    (
        f"{SM}:KVCachingTransformerLM.__call__",
        "(self, tokens: NamedArray, **extra_side_inputs: dict[Any, Any]) -> NamedArray",
    ),
    (
        f"{SM}:KVCachingTransformerLM.from_uncached",
        "(cls, uncached: TransformerLM, cache_len: int, batch_axes: dict[str,"
        " int], pad_id: int = 0, variable_name_prefix: str = 'sampler') ->"
        " KVCachingTransformerLM",
    ),
    (
        f"{M}.transformer.simple_decoding_loop:temperature_sample_pyloop",
        "(model: KVCachingTransformerLM, prompt: NamedArray, rng: jax.Array,"
        " temperature: float = 1.0, max_sampling_steps: int | None = None) -> NamedArray",
    ),
]

_LLAMALIKE_CONFIG_FIELDS = (
    "(*, num_kv_heads, query_head_multiplier, embedding_dim, projection_dim,"
    " mlp_hidden_dim, num_decoder_blocks, vocab_size, mlp_variant,"
    " tie_embedder_and_logits, rope_wavelength = 10_000, rms_norm_eps = 1e-6,"
    " attention_type = AttentionTypeGlobalCausal(), use_post_attn_norm = False,"
    " use_post_ffw_norm = False, final_logit_softcap = None,"
    " attn_logits_soft_cap = None, query_scaling_factor = 'default',"
    " parameter_dtype = jnp.float32, activation_dtype = jnp.float32,"
    " use_layer_stack = False, use_qk_norm = False, global_scale_factor = None,"
    " local_rope_wavelength = None)"
)

CLASSES: list[h.ClassSpec] = [
    h.ClassSpec(f"{M}.simple_mlp:MLP", bases=(SEQ,), fields="(sublayers)", pytree=True, implicit=True),
    h.ClassSpec(
        f"{M}.simple_mlp:DropoutMLP", bases=(SEQ,), fields="(sublayers)", pytree=True, implicit=True
    ),
    h.ClassSpec(
        f"{MP}:TransformerMetadata",
        fields=(
            "(common_head_axes, query_only_head_axes, embedding_dim,"
            " projection_dim, mlp_hidden_dim, vocab_size, activation_dtype)"
        ),
        dataclass_params=(("frozen", False),),
    ),
    h.ClassSpec(
        f"{MP}:TransformerFeedForward", bases=(SEQ,), fields="(sublayers)", pytree=True, implicit=True
    ),
    h.ClassSpec(
        f"{MP}:TransformerBlock", bases=(SEQ,), fields="(sublayers)", pytree=True, implicit=True
    ),
    h.ClassSpec(
        f"{MP}:TransformerLM", bases=(LAYER,), fields="(body, metadata: static)", pytree=True
    ),
    h.ClassSpec(f"{LC}:AttentionTypeGlobalCausal", fields="()", dataclass_params=(("frozen", True),)),
    h.ClassSpec(
        f"{LC}:AttentionTypeSlidingWindowCausal",
        fields="(window_size)",
        dataclass_params=(("frozen", True),),
    ),
    h.ClassSpec(
        f"{LC}:LlamalikeTransformerConfig",
        fields=_LLAMALIKE_CONFIG_FIELDS,
        dataclass_params=(("frozen", False),),
    ),
    h.ClassSpec(
        f"{GN}:GPTNeoXTransformerConfig",
        fields=(
            "(num_attention_heads, embedding_dim, projection_dim, mlp_hidden_dim,"
            " num_decoder_blocks, vocab_size, activation_fn, rope_subset_size,"
            " rope_wavelength, layernorm_epsilon, parameter_dtype,"
            " activation_dtype, use_layer_stack = False)"
        ),
        dataclass_params=(("frozen", False),),
    ),
    h.ClassSpec(
        f"{SM}:KVCachingTransformerLM",
        bases=(LAYER,),
        fields=(
            "(body, cache_end_index, previous_tokens, metadata: static, cache_len:"
            " static, batch_axes: static, pad_id: static)"
        ),
        pytree=True,
    ),
]

KNOWN_MISMATCHES: dict[str, str] = {}


def _mark(target: str) -> list[pytest.MarkDecorator]:
  if target in KNOWN_MISMATCHES:
    return [pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[target])]
  return []


@pytest.mark.parametrize(
    "target,expected", [pytest.param(t, s, id=t, marks=_mark(t)) for t, s in CALLABLES]
)
def test_callable_signature(target: str, expected: str) -> None:
  h.check(h.callable_problems(target, expected), f"{target}{expected}", lambda: h.describe(target))


@pytest.mark.parametrize(
    "spec", [pytest.param(c, id=c.target, marks=_mark(c.target)) for c in CLASSES]
)
def test_class_structure(spec: h.ClassSpec) -> None:
  h.check(h.class_problems(spec), spec.target, lambda: h.describe(spec.target))


def test_attention_type_union() -> None:
  from penzai.models.transformer.variants import llamalike_common as lc

  assert isinstance(lc.AttentionType, types.UnionType)
  assert set(lc.AttentionType.__args__) == {
      lc.AttentionTypeGlobalCausal,
      lc.AttentionTypeSlidingWindowCausal,
  }


def test_huggingface_model_type_aliases() -> None:
  from typing import Any

  from penzai.models.transformer.variants import gpt_neox, llama, mistral

  assert llama.LlamaForCausalLM is Any
  assert mistral.MistralForCausalLM is Any
  assert gpt_neox.GPTNeoXForCausalLM is Any


def test_package_layout() -> None:
  from penzai.models import transformer
  from penzai.models.transformer import variants

  for name in ("model_parts", "sampling_mode", "simple_decoding_loop", "variants"):
    assert isinstance(getattr(transformer, name), types.ModuleType), name
  for name in ("gemma", "gpt_neox", "llama", "llamalike_common", "mistral"):
    assert isinstance(getattr(variants, name), types.ModuleType), name


def test_gemma_presets_and_transpose_table() -> None:
  from penzai.models.transformer.variants import gemma

  names = [
      "gemma_2b", "gemma_7b", "gemma2_2b", "gemma2_9b", "gemma2_27b",
      "gemma3_1b", "gemma3_4b", "gemma3_12b", "gemma3_27b",
  ]
  assert list(gemma._GEMMA_PRESETS) == names  # pylint: disable=protected-access
  assert gemma._NEEDS_GATING_TRANSPOSE == {  # pylint: disable=protected-access
      "gemma_2b": False, "gemma_7b": False, "gemma2_2b": False,
      "gemma2_9b": True, "gemma2_27b": True, "gemma3_1b": True,
      "gemma3_4b": True, "gemma3_12b": True, "gemma3_27b": True,
  }
