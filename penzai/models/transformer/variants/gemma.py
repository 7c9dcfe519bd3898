"""Gemma, Gemma 2 and Gemma 3 transformers.

Gemma models are `llamalike_common` transformers with tied embeddings (scaled
by ``sqrt(embedding_dim)``), tanh-approximate GeGLU MLPs and RMS norms whose
stored weights are offsets from 1. Gemma 2 adds post-norms, alternating
sliding-window attention and logit soft caps; Gemma 3 adds per-head
query/key norms, a 5:1 local/global pattern and separate RoPE settings for
local and global layers.

Two loaders are provided: `gemma_from_pretrained_checkpoint` for the official
Flax checkpoints, and `gemma_from_huggingface_model` for HuggingFace
``GemmaForCausalLM`` / ``Gemma2ForCausalLM`` / ``Gemma3ForCausalLM`` models.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp

from penzai import pz
from penzai.models.transformer import model_parts
from penzai.models.transformer.variants import llamalike_common

AttentionType = llamalike_common.AttentionType
_SW = llamalike_common.AttentionTypeSlidingWindowCausal
_G = llamalike_common.AttentionTypeGlobalCausal


def _make_attention_layers_types(
    pattern: tuple[AttentionType, ...], *, num_layers: int
) -> tuple[AttentionType, ...]:
    """Repeats `pattern` to cover exactly `num_layers` layers."""
    repeats, remainder = divmod(num_layers, len(pattern))
    return tuple(pattern) * repeats + tuple(pattern[:remainder])


_GEMMA2_COMMON: dict[str, Any] = dict(
    attention_type=(_SW(4096), _G()),
    use_post_attn_norm=True,
    use_post_ffw_norm=True,
    final_logit_softcap=30.0,
    attn_logits_soft_cap=50.0,
)


def _gemma3_common(window: int, num_layers: int) -> dict[str, Any]:
    return dict(
        attention_type=_make_attention_layers_types(
            pattern=(_SW(window),) * 5 + (_G(),), num_layers=num_layers
        ),
        use_qk_norm=True,
        use_post_attn_norm=True,
        use_post_ffw_norm=True,
        rope_wavelength=1_000_000,
        local_rope_wavelength=10_000,
    )


_GEMMA_PRESETS: dict[str, dict[str, Any]] = {
    "gemma_2b": dict(
        num_decoder_blocks=18,
        vocab_size=256_128,
        num_kv_heads=1,
        query_head_multiplier=8,
        embedding_dim=2048,
        projection_dim=256,
        mlp_hidden_dim=16_384,
    ),
    "gemma_7b": dict(
        num_decoder_blocks=28,
        vocab_size=256_128,
        num_kv_heads=16,
        query_head_multiplier=1,
        embedding_dim=3072,
        projection_dim=256,
        mlp_hidden_dim=24_576,
    ),
    "gemma2_2b": dict(
        num_decoder_blocks=26,
        vocab_size=256_128,
        num_kv_heads=4,
        query_head_multiplier=2,
        embedding_dim=2304,
        projection_dim=256,
        mlp_hidden_dim=9216,
        **_GEMMA2_COMMON,
    ),
    "gemma2_9b": dict(
        num_decoder_blocks=42,
        vocab_size=256_128,
        num_kv_heads=8,
        query_head_multiplier=2,
        embedding_dim=3584,
        projection_dim=256,
        mlp_hidden_dim=14_336,
        **_GEMMA2_COMMON,
    ),
    "gemma2_27b": dict(
        num_decoder_blocks=46,
        vocab_size=256_128,
        num_kv_heads=16,
        query_head_multiplier=2,
        embedding_dim=4608,
        projection_dim=128,
        mlp_hidden_dim=36_864,
        query_scaling_factor=(4608 // 32) ** -0.5,
        **_GEMMA2_COMMON,
    ),
    "gemma3_1b": dict(
        num_decoder_blocks=26,
        vocab_size=262_144,
        num_kv_heads=1,
        query_head_multiplier=4,
        embedding_dim=1152,
        projection_dim=256,
        mlp_hidden_dim=6 * 1152,
        **_gemma3_common(512, 26),
    ),
    "gemma3_4b": dict(
        num_decoder_blocks=34,
        vocab_size=262_144,
        num_kv_heads=4,
        query_head_multiplier=2,
        embedding_dim=2560,
        projection_dim=256,
        mlp_hidden_dim=2560 * 8 // 2,
        global_scale_factor=8.0,
        **_gemma3_common(1024, 34),
    ),
    "gemma3_12b": dict(
        num_decoder_blocks=48,
        vocab_size=262_144,
        num_kv_heads=8,
        query_head_multiplier=2,
        embedding_dim=30 * 128,
        projection_dim=256,
        mlp_hidden_dim=8 * 30 * 128 // 2,
        global_scale_factor=8.0,
        **_gemma3_common(1024, 48),
    ),
    "gemma3_27b": dict(
        num_decoder_blocks=62,
        vocab_size=262_144,
        num_kv_heads=16,
        query_head_multiplier=2,
        embedding_dim=5376,
        projection_dim=128,
        mlp_hidden_dim=5376 * 8 // 2,
        query_scaling_factor=(5376 // 32) ** -0.5,
        global_scale_factor=8.0,
        **_gemma3_common(1024, 62),
    ),
}

_NEEDS_GATING_TRANSPOSE: dict[str, bool] = {
    "gemma_2b": False,
    "gemma_7b": False,
    "gemma2_2b": False,
    "gemma2_9b": True,
    "gemma2_27b": True,
    "gemma3_1b": True,
    "gemma3_4b": True,
    "gemma3_12b": True,
    "gemma3_27b": True,
}


def _tag(array: Any, *names: str) -> pz.nx.NamedArray:
    return pz.nx.wrap(jnp.asarray(array)).tag(*names)


def _detect_preset(params: dict[str, Any]) -> str:
    """Picks the preset matching the checkpoint's layer count and qk-norm use."""
    num_layers = 0
    while f"layer_{num_layers}/mlp/linear" in params:
        num_layers += 1
    qk_norm = "layer_0/attn/_query_norm" in params and "layer_0/attn/_key_norm" in params
    for preset_name, preset in _GEMMA_PRESETS.items():
        if preset["num_decoder_blocks"] != num_layers:
            continue
        if (qk_norm and preset.get("use_qk_norm")) or (
            not qk_norm and "use_qk_norm" not in preset
        ):
            return preset_name
    raise ValueError(
        f"Could not determine preset for model with {num_layers} layers and qk norm {qk_norm}."
    )


def gemma_from_pretrained_checkpoint(
    ckpt_params: dict[str, Any],
    upcast_activations_to_float32: bool = False,
    use_layer_stack: bool = False,
    preset_name: Literal[
        "gemma_2b",
        "gemma_7b",
        "gemma2_2b",
        "gemma2_9b",
        "gemma2_27b",
        "gemma3_1b",
        "gemma3_4b",
        "gemma3_12b",
        "gemma3_27b",
        "auto",
    ] = "auto",
) -> model_parts.TransformerLM:
    """Builds a Gemma model from an official Flax checkpoint.

    Args:
        ckpt_params: The flat dict restored by
            ``orbax.checkpoint.PyTreeCheckpointer().restore(path)``: keys are
            ``/``-joined module paths (optionally prefixed by
            ``"transformer/"``), values are dicts of arrays.
        upcast_activations_to_float32: Run activations in float32 even if the
            weights are lower precision.
        use_layer_stack: Build the blocks as one `LayerStack` (only Gemma 1
            presets, which have a single attention type).
        preset_name: Architecture preset, or ``"auto"`` to infer it from the
            number of layers and the presence of query/key norms.

    Returns:
        The penzai model.

    Raises:
        ValueError: If the preset cannot be inferred, or a layer stack is
            requested for a model with per-layer attention types.
        KeyError: For an unknown explicit preset name.
    """
    params = {k.removeprefix("transformer/"): v for k, v in ckpt_params.items()}
    if preset_name == "auto":
        preset_name = _detect_preset(params)  # type: ignore[assignment]
    preset = _GEMMA_PRESETS[preset_name]
    needs_transpose = _NEEDS_GATING_TRANSPOSE[preset_name]

    parameter_dtype = jnp.asarray(params["layer_0/attn/attn_vec_einsum"]["w"]).dtype
    activation_dtype = jnp.float32 if upcast_activations_to_float32 else parameter_dtype
    config = llamalike_common.LlamalikeTransformerConfig(
        **preset,
        parameter_dtype=parameter_dtype,
        mlp_variant="geglu_approx",
        tie_embedder_and_logits=True,
        activation_dtype=activation_dtype,
        use_layer_stack=use_layer_stack,
    )
    skeleton = llamalike_common.build_llamalike_transformer(
        config, init_base_rng=None, name="transformer"
    )

    def norm_scale(key: str, axis: str) -> pz.nx.NamedArray:
        return _tag(1 + jnp.asarray(params[key]["scale"]), axis)

    global_params: dict[str, pz.nx.NamedArrayBase] = {
        "embedder.embeddings": _tag(
            params["embedder"]["input_embedding"], "vocabulary", "embedding"
        ),
        "final_norm/scale.weights": norm_scale("final_norm", "embedding"),
    }
    kv, qm = config.num_kv_heads, config.query_head_multiplier
    e, p = config.embedding_dim, config.projection_dim
    block_params = []
    for i in range(config.num_decoder_blocks):
        pre = f"layer_{i}/"
        block: dict[str, pz.nx.NamedArrayBase] = {
            "pre_attention_norm/scale.weights": norm_scale(f"{pre}pre_attention_norm", "embedding"),
            "pre_ffw_norm/scale.weights": norm_scale(f"{pre}pre_ffw_norm", "embedding"),
        }
        if config.use_qk_norm:
            block["attention/query_norm/scale.weights"] = norm_scale(
                f"{pre}attn/_query_norm", "projection"
            )
            block["attention/key_norm/scale.weights"] = norm_scale(
                f"{pre}attn/_key_norm", "projection"
            )
        if config.use_post_attn_norm:
            block["post_attention_norm/scale.weights"] = norm_scale(
                f"{pre}post_attention_norm", "embedding"
            )
        if config.use_post_ffw_norm:
            block["post_ffw_norm/scale.weights"] = norm_scale(f"{pre}post_ffw_norm", "embedding")

        gating = jnp.asarray(params[f"{pre}mlp/gating_einsum"]["w"])
        if needs_transpose:
            gating = gating.transpose((0, 2, 1))
        block["mlp/gating_linear.weights"] = _tag(gating[0], "embedding", "neurons")
        block["mlp/value_linear.weights"] = _tag(gating[1], "embedding", "neurons")
        block["mlp/out_linear.weights"] = _tag(
            params[f"{pre}mlp/linear"]["w"], "neurons", "embedding"
        )

        out_w = jnp.asarray(params[f"{pre}attn/attn_vec_einsum"]["w"])
        if kv == 1:
            q_w = jnp.asarray(params[f"{pre}attn/q_einsum"]["w"])
            kv_w = jnp.asarray(params[f"{pre}attn/kv_einsum"]["w"])
            block["attention/query.weights"] = _tag(q_w, "query_heads", "embedding", "projection")
            block["attention/key.weights"] = _tag(kv_w[0].squeeze(0), "embedding", "projection")
            block["attention/value.weights"] = _tag(kv_w[1].squeeze(0), "embedding", "projection")
            block["attention/output.weights"] = _tag(
                out_w, "query_heads", "projection", "embedding"
            )
        elif qm == 1:
            qkv_w = jnp.asarray(params[f"{pre}attn/qkv_einsum"]["w"])
            for index, part in enumerate(("query", "key", "value")):
                block[f"attention/{part}.weights"] = _tag(
                    qkv_w[index], "heads", "embedding", "projection"
                )
            block["attention/output.weights"] = _tag(out_w, "heads", "projection", "embedding")
        else:
            q_w = jnp.asarray(params[f"{pre}attn/q_einsum"]["w"])
            kv_w = jnp.asarray(params[f"{pre}attn/kv_einsum"]["w"])
            block["attention/key.weights"] = _tag(
                kv_w[0], "head_groups", "embedding", "projection"
            )
            block["attention/value.weights"] = _tag(
                kv_w[1], "head_groups", "embedding", "projection"
            )
            block["attention/query.weights"] = _tag(
                q_w.reshape(kv, qm, e, p), "head_groups", "query_heads", "embedding", "projection"
            )
            block["attention/output.weights"] = _tag(
                out_w.reshape(kv, qm, p, e), "head_groups", "query_heads", "projection", "embedding"
            )
        for part in ("query", "key", "value"):
            key = f"attention/{part}.weights"
            block[key] = llamalike_common.contraction_friendly(block[key])
        block_params.append(block)

    return llamalike_common.bind_converted_params(
        skeleton, global_params, block_params, use_layer_stack
    )


# ---------------------------------------------------------------------------
# HuggingFace Gemma / Gemma 2 / Gemma 3 (text) conversion.
# ---------------------------------------------------------------------------

GemmaForCausalLM = Any

_HF_HANDLED_ATTRIBUTES = frozenset({
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "head_dim",
    "hidden_act",
    "hidden_activation",
    "hidden_size",
    "intermediate_size",
    "layer_types",
    "num_attention_heads",
    "num_hidden_layers",
    "num_key_value_heads",
    "query_pre_attn_scalar",
    "rms_norm_eps",
    "rope_parameters",
    "rope_theta",
    "rope_local_base_freq",
    "rope_scaling",
    "sliding_window",
    "sliding_window_pattern",
    "_sliding_window_pattern",
    "tie_word_embeddings",
    "vocab_size",
})

_HF_IGNORED_ATTRIBUTES = frozenset({
    "_attn_implementation_autoset",
    "_name_or_path",
    "architectures",
    "attention_dropout",
    "bos_token_id",
    "cache_implementation",
    "dtype",
    "eos_token_id",
    "initializer_range",
    "max_position_embeddings",
    "pad_token_id",
    "torch_dtype",
    "use_cache",
})

_HF_ACTIVATIONS = {
    "gelu_pytorch_tanh": "geglu_approx",
    "gelu_new": "geglu_approx",
    "gelu": "geglu_exact",
}


def _hf_rope_settings(hf_config: Any, layer_type: str) -> tuple[float, float]:
    """RoPE ``(wavelength, scale_factor)`` of one HF layer type.

    Raises:
        ValueError: For RoPE scaling types other than ``"default"`` and
            ``"linear"``.
    """
    rope_parameters = getattr(hf_config, "rope_parameters", None)
    if isinstance(rope_parameters, dict) and layer_type in rope_parameters:
        rope_parameters = rope_parameters[layer_type]
    if not isinstance(rope_parameters, dict):
        theta = getattr(hf_config, "rope_theta", 10_000.0)
        if layer_type == "sliding_attention":
            theta = getattr(hf_config, "rope_local_base_freq", theta)
        rope_parameters = {"rope_type": "default", "rope_theta": theta}
        scaling = getattr(hf_config, "rope_scaling", None)
        if layer_type == "full_attention" and isinstance(scaling, dict):
            rope_parameters.update(scaling)
    rope_type = rope_parameters.get("rope_type", rope_parameters.get("type", "default"))
    theta = float(rope_parameters["rope_theta"])
    if rope_type == "default":
        return theta, 1.0
    if rope_type == "linear":
        return theta, float(rope_parameters["factor"])
    raise ValueError(
        f"Conversion of a Gemma model does not support rope_parameters with"
        f" rope_type {rope_type!r} (for {layer_type} layers): {rope_parameters!r}."
        " Supported RoPE types are 'default' and 'linear'."
    )


def gemma_from_huggingface_model(
    model: GemmaForCausalLM,
    upcast_activations_to_float32: bool = False,
    use_layer_stack: bool = False,
) -> model_parts.TransformerLM:
    """Converts a HuggingFace Gemma, Gemma 2 or Gemma 3 text model to penzai.

    Accepts ``GemmaForCausalLM``, ``Gemma2ForCausalLM`` and
    ``Gemma3ForCausalLM`` (the text-only Gemma 3 model). The result has the
    same structure and labels as `gemma_from_pretrained_checkpoint` output
    (norm weights stored as effective multipliers ``1 + w``). A model with
    untied input/output embeddings keeps the ``sqrt(embedding_dim)`` input
    scaling and gets a separate ``transformer/lm_head.weights`` head.

    Args:
        model: The HuggingFace model (float32 or bfloat16 weights).
        upcast_activations_to_float32: Run activations in float32 even if the
            weights are bfloat16.
        use_layer_stack: Build the blocks as one `LayerStack`; only possible
            when every layer has the same attention type.

    Returns:
        The equivalent penzai model.

    Raises:
        RuntimeError: If ``transformers`` is not installed.
        ValueError: If `model` is not one of the supported classes, or its
            configuration uses unsupported features (each offending attribute
            is named with its value).
    """
    try:
        import transformers  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise RuntimeError("HuggingFace transformers is not available") from exc

    supported = {
        transformers.GemmaForCausalLM: (transformers.GemmaConfig, 1),
        transformers.Gemma2ForCausalLM: (transformers.Gemma2Config, 2),
        transformers.Gemma3ForCausalLM: (transformers.Gemma3TextConfig, 3),
    }
    if type(model) not in supported:
        raise ValueError(
            "gemma_from_huggingface_model should be called with a GemmaForCausalLM,"
            " Gemma2ForCausalLM or Gemma3ForCausalLM instance, but got"
            f" {type(model).__name__}."
        )
    config_cls, generation = supported[type(model)]
    llamalike_common.check_hf_config_attributes(
        model,
        config_cls(),
        handled=_HF_HANDLED_ATTRIBUTES,
        ignored=_HF_IGNORED_ATTRIBUTES,
        check_rope=False,
    )
    hf_config = model.config
    bidirectional = getattr(hf_config, "use_bidirectional_attention", None)
    if bidirectional:
        raise ValueError(
            "Conversion of a Gemma model does not support these configuration"
            f" attributes: {{'use_bidirectional_attention': {bidirectional!r}}}"
        )
    activation_name = getattr(hf_config, "hidden_activation", None) or hf_config.hidden_act
    if activation_name not in _HF_ACTIVATIONS:
        raise ValueError(
            "Conversion of a Gemma model does not support these configuration"
            f" attributes: {{'hidden_activation': {activation_name!r}}}"
        )

    num_heads = hf_config.num_attention_heads
    num_kv_heads = hf_config.num_key_value_heads
    if num_heads % num_kv_heads:
        raise ValueError(
            f"num_attention_heads ({num_heads}) must be a multiple of"
            f" num_key_value_heads ({num_kv_heads})."
        )
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // num_heads
    num_layers = hf_config.num_hidden_layers

    # Per-layer attention types and RoPE settings.
    if generation == 1:
        layer_types = ["full_attention"] * num_layers
    else:
        layer_types = list(hf_config.layer_types)
    global_theta, global_scale = _hf_rope_settings(hf_config, "full_attention")
    local_theta, local_scale = global_theta, 1.0
    if "sliding_attention" in layer_types:
        local_theta, local_scale = _hf_rope_settings(hf_config, "sliding_attention")
        if local_scale != 1.0:
            raise ValueError(
                "Conversion of a Gemma model does not support RoPE scaling on"
                f" sliding-window layers (scale factor {local_scale})."
            )
    attention_types: list[AttentionType] = []
    for layer_type in layer_types:
        if layer_type == "sliding_attention":
            attention_types.append(_SW(hf_config.sliding_window))
        elif layer_type == "full_attention":
            attention_types.append(_G())
        else:
            raise ValueError(
                "Conversion of a Gemma model does not support these configuration"
                f" attributes: {{'layer_types': {layer_types!r}}}"
            )
    attention_type: AttentionType | tuple[AttentionType, ...]
    if len(set(attention_types)) == 1:
        attention_type = attention_types[0]
    else:
        attention_type = tuple(attention_types)

    param_dtype = llamalike_common.torch_dtype_to_jax(model)
    activation_dtype = jnp.float32 if upcast_activations_to_float32 else param_dtype
    tied = bool(getattr(hf_config, "tie_word_embeddings", True))
    query_scalar = getattr(hf_config, "query_pre_attn_scalar", None)
    config = llamalike_common.LlamalikeTransformerConfig(
        num_kv_heads=num_kv_heads,
        query_head_multiplier=num_heads // num_kv_heads,
        embedding_dim=hf_config.hidden_size,
        projection_dim=head_dim,
        mlp_hidden_dim=hf_config.intermediate_size,
        num_decoder_blocks=num_layers,
        vocab_size=hf_config.vocab_size,
        mlp_variant=_HF_ACTIVATIONS[activation_name],  # type: ignore[arg-type]
        tie_embedder_and_logits=tied,
        rope_wavelength=global_theta,
        rms_norm_eps=hf_config.rms_norm_eps,
        attention_type=attention_type,
        use_post_attn_norm=generation >= 2,
        use_post_ffw_norm=generation >= 2,
        final_logit_softcap=getattr(hf_config, "final_logit_softcapping", None),
        attn_logits_soft_cap=getattr(hf_config, "attn_logit_softcapping", None),
        query_scaling_factor="default" if query_scalar is None else query_scalar**-0.5,
        parameter_dtype=param_dtype,
        activation_dtype=activation_dtype,
        use_layer_stack=use_layer_stack,
        use_qk_norm=generation >= 3,
        global_scale_factor=global_scale if global_scale != 1.0 else None,
        local_rope_wavelength=local_theta if local_theta != global_theta else None,
    )
    skeleton = llamalike_common.build_llamalike_transformer(
        config, init_base_rng=None, name="transformer"
    )
    if not tied:
        # HF scales the input embeddings even when the head is untied.
        skeleton = _insert_embedding_rescale(skeleton, config)

    converted = llamalike_common.hf_state_dict_as_jax(model)

    def scale(key: str, axis: str) -> pz.nx.NamedArray:
        # HF stores the norm weight as an offset from 1 and applies it in
        # float32; penzai stores the effective multiplier.
        weight = converted[key]
        return _tag((1 + weight.astype(jnp.float32)).astype(weight.dtype), axis)

    global_params: dict[str, pz.nx.NamedArrayBase] = {
        "embedder.embeddings": _tag(
            converted["model.embed_tokens.weight"], "vocabulary", "embedding"
        ),
        "final_norm/scale.weights": scale("model.norm.weight", "embedding"),
    }
    if not tied:
        global_params["lm_head.weights"] = _tag(
            converted["lm_head.weight"], "vocabulary", "embedding"
        )
    block_params = []
    for i in range(num_layers):
        pre = f"model.layers.{i}."
        block: dict[str, pz.nx.NamedArrayBase] = {
            "pre_attention_norm/scale.weights": scale(f"{pre}input_layernorm.weight", "embedding"),
            "mlp/gating_linear.weights": _tag(
                converted[f"{pre}mlp.gate_proj.weight"], "neurons", "embedding"
            ),
            "mlp/value_linear.weights": _tag(
                converted[f"{pre}mlp.up_proj.weight"], "neurons", "embedding"
            ),
            "mlp/out_linear.weights": _tag(
                converted[f"{pre}mlp.down_proj.weight"], "embedding", "neurons"
            ),
        }
        if generation == 1:
            block["pre_ffw_norm/scale.weights"] = scale(
                f"{pre}post_attention_layernorm.weight", "embedding"
            )
        else:
            block["post_attention_norm/scale.weights"] = scale(
                f"{pre}post_attention_layernorm.weight", "embedding"
            )
            block["pre_ffw_norm/scale.weights"] = scale(
                f"{pre}pre_feedforward_layernorm.weight", "embedding"
            )
            block["post_ffw_norm/scale.weights"] = scale(
                f"{pre}post_feedforward_layernorm.weight", "embedding"
            )
        if generation >= 3:
            block["attention/query_norm/scale.weights"] = scale(
                f"{pre}self_attn.q_norm.weight", "projection"
            )
            block["attention/key_norm/scale.weights"] = scale(
                f"{pre}self_attn.k_norm.weight", "projection"
            )
        for key, value in llamalike_common.llamalike_attention_params_from_hf(
            f"{pre}self_attn.", converted, config
        ).items():
            block[f"attention/{key}"] = value
        block_params.append(block)

    return llamalike_common.bind_converted_params(
        skeleton, global_params, block_params, use_layer_stack
    )


def _insert_embedding_rescale(
    model: model_parts.TransformerLM, config: llamalike_common.LlamalikeTransformerConfig
) -> model_parts.TransformerLM:
    """Adds the ``sqrt(embedding_dim)`` input scaling to an untied skeleton."""
    body = model.body
    assert isinstance(body, pz.nn.Sequential)
    position = 2 if isinstance(body.sublayers[1], pz.nn.CastToDType) else 1
    rescale = pz.nn.ConstantRescale(
        by=jnp.sqrt(config.embedding_dim).astype(config.activation_dtype)
    )
    new_sublayers = list(body.sublayers)
    new_sublayers.insert(position, rescale)
    return model_parts.TransformerLM(
        body=pz.nn.Sequential(new_sublayers), metadata=model.metadata
    )
