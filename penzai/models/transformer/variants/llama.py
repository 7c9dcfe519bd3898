"""Llama models: conversion from HuggingFace ``LlamaForCausalLM``.

Llama is a `llamalike_common` transformer (SwiGLU MLP, RoPE, RMS norms,
grouped-query attention, untied output head).
"""

from __future__ import annotations

from typing import Any

from penzai.models.transformer import model_parts
from penzai.models.transformer.variants import llamalike_common

LlamaForCausalLM = Any

_HANDLED_ATTRIBUTES = frozenset({
    "hidden_act",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_hidden_layers",
    "num_key_value_heads",
    "rms_norm_eps",
    "rope_theta",
    "vocab_size",
})

_IGNORED_ATTRIBUTES = frozenset({
    "_attn_implementation_autoset",
    "_name_or_path",
    "architectures",
    "attention_probs_dropout_prob",
    "bos_token_id",
    "eos_token_id",
    "head_dim",
    "hidden_dropout_prob",
    "is_decoder",
    "max_position_embeddings",
    "pad_token_id",
    "torch_dtype",
    "dtype",
    "type_vocab_size",
    "use_cache",
})


def llama_from_huggingface_model(
    model: LlamaForCausalLM,
    upcast_activations_to_float32: bool = False,
    use_layer_stack: bool = False,
) -> model_parts.TransformerLM:
    """Converts a HuggingFace ``LlamaForCausalLM`` into a penzai `TransformerLM`.

    Args:
        model: The HuggingFace model (float32 or bfloat16 weights).
        upcast_activations_to_float32: Run activations in float32 even if the
            weights are bfloat16.
        use_layer_stack: Build the blocks as a single `LayerStack`.

    Returns:
        The equivalent penzai model.

    Raises:
        RuntimeError: If ``transformers`` is not installed.
        ValueError: If `model` is not exactly a ``LlamaForCausalLM`` or its
            configuration uses features the conversion does not support (e.g.
            a RoPE scaling type other than the default), listing each
            offending attribute and value.
    """
    llamalike_common.check_hf_model(
        model,
        "llama_from_huggingface_model",
        "LlamaForCausalLM",
        "LlamaConfig",
        handled=_HANDLED_ATTRIBUTES,
        ignored=_IGNORED_ATTRIBUTES,
    )
    return llamalike_common.llamalike_from_huggingface_model(
        model,
        upcast_activations_to_float32=upcast_activations_to_float32,
        use_layer_stack=use_layer_stack,
    )
