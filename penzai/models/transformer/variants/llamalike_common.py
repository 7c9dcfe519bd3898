"""Configurable "Llama-like" decoder-only transformer (Llama, Mistral, Gemma).

One configuration class, `LlamalikeTransformerConfig`, covers the family of
pre-norm transformers with rotary position embeddings, gated MLPs and
(optionally grouped-query) attention. The builders below produce the exact
layer tree and parameter labels that users select by, and
`llamalike_from_huggingface_model` loads the weights of a HuggingFace
Llama-style model into that tree.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Collection, Literal, Sequence

import jax
import jax.numpy as jnp

from penzai import pz
from penzai.models.transformer import model_parts


@dataclasses.dataclass(frozen=True)
class AttentionTypeGlobalCausal:
    """Marker: ordinary causal attention over the whole prefix."""


@dataclasses.dataclass(frozen=True)
class AttentionTypeSlidingWindowCausal:
    """Marker: causal attention restricted to the last `window_size` tokens.

    Attributes:
        window_size: A query at position ``q`` sees keys at positions ``k``
            with ``0 <= q - k < window_size``.
    """

    window_size: int


AttentionType = AttentionTypeGlobalCausal | AttentionTypeSlidingWindowCausal


@dataclasses.dataclass(kw_only=True)
class LlamalikeTransformerConfig:
    """Hyperparameters of a Llama-like transformer.

    Attributes:
        num_kv_heads: Number of key/value heads.
        query_head_multiplier: Query heads per key/value head (total query
            heads = ``num_kv_heads * query_head_multiplier``).
        embedding_dim: Width of the residual stream.
        projection_dim: Per-head query/key/value width.
        mlp_hidden_dim: Width of the gated MLP hidden layer.
        num_decoder_blocks: Number of transformer blocks.
        vocab_size: Vocabulary size.
        mlp_variant: Gating activation: ``"geglu_exact"``, ``"geglu_approx"``
            (tanh GELU) or ``"swiglu"`` (SiLU).
        tie_embedder_and_logits: Share the embedding table with the output
            head; also scales input embeddings by ``sqrt(embedding_dim)``.
        rope_wavelength: Maximum RoPE wavelength (the "theta" base).
        rms_norm_eps: Epsilon of every RMS norm.
        attention_type: One attention type for all blocks, or a sequence
            cycled over blocks (``block_index % len``).
        use_post_attn_norm: Add an RMS norm after attention (Gemma 2/3).
        use_post_ffw_norm: Add an RMS norm after the MLP (Gemma 2/3).
        final_logit_softcap: Tanh soft cap on the output logits, if set.
        attn_logits_soft_cap: Tanh soft cap on attention logits, if set.
        query_scaling_factor: Query scale; ``"default"`` is
            ``projection_dim ** -0.5``.
        parameter_dtype: Dtype of the parameters.
        activation_dtype: Dtype of the activations.
        use_layer_stack: Build the blocks as one `LayerStack` (scan) instead of
            a list of blocks.
        use_qk_norm: RMS-normalize queries and keys per head (Gemma 3).
        global_scale_factor: RoPE position scale for global layers (None = 1).
        local_rope_wavelength: RoPE wavelength for sliding-window layers (None
            = `rope_wavelength`).
    """

    num_kv_heads: int
    query_head_multiplier: int
    embedding_dim: int
    projection_dim: int
    mlp_hidden_dim: int
    num_decoder_blocks: int
    vocab_size: int
    mlp_variant: Literal["geglu_exact", "geglu_approx", "swiglu"]
    tie_embedder_and_logits: bool
    rope_wavelength: float = 10_000
    rms_norm_eps: float = 1e-6
    attention_type: AttentionType | Sequence[AttentionType] = AttentionTypeGlobalCausal()
    use_post_attn_norm: bool = False
    use_post_ffw_norm: bool = False
    final_logit_softcap: float | None = None
    attn_logits_soft_cap: float | None = None
    query_scaling_factor: float | Literal["default"] = "default"
    parameter_dtype: jax.typing.DTypeLike = jnp.float32
    activation_dtype: jax.typing.DTypeLike = jnp.float32
    use_layer_stack: bool = False
    use_qk_norm: bool = False
    global_scale_factor: float | None = None
    local_rope_wavelength: float | None = None


def _head_info(
    config: LlamalikeTransformerConfig,
) -> tuple[dict[str, int], dict[str, str], dict[str, int], dict[str, str]]:
    """Head axes for the config's attention style.

    Returns:
        ``(common_head_axes, common_index, query_only_head_axes,
        query_only_index)``: axis sizes and einsum index names for the head
        axes shared by q/k/v and for those only present on queries.
    """
    if config.query_head_multiplier == 1:
        return {"heads": config.num_kv_heads}, {"heads": "h"}, {}, {}
    if config.num_kv_heads == 1:
        return {}, {}, {"query_heads": config.query_head_multiplier}, {"query_heads": "h"}
    return (
        {"head_groups": config.num_kv_heads},
        {"head_groups": "hg"},
        {"query_heads": config.query_head_multiplier},
        {"query_heads": "hq"},
    )


def _rms_norm(
    name: str, init_base_rng: jax.Array | None, axis: str, size: int, config: LlamalikeTransformerConfig
) -> pz.nn.RMSLayerNorm:
    """An RMS norm across one axis, with the config's epsilon and dtype."""
    return pz.nn.RMSLayerNorm.from_config(
        name=name,
        init_base_rng=init_base_rng,
        across_axes={axis: size},
        epsilon=config.rms_norm_eps,
        dtype=config.parameter_dtype,
    )


def build_llamalike_feedforward(
    name: str,
    init_base_rng: jax.Array | None,
    config: LlamalikeTransformerConfig,
) -> model_parts.TransformerFeedForward:
    """Builds the gated MLP ``out(act(gate(x)) * value(x))`` of one block.

    Args:
        name: Label prefix of the parameters.
        init_base_rng: Base key for initialization, or None for slots.
        config: The transformer configuration.

    Returns:
        The feed-forward layer.

    Raises:
        ValueError: If ``config.mlp_variant`` is not supported.
    """
    act_fn: Callable[[jax.Array], jax.Array]
    if config.mlp_variant == "geglu_exact":
        act_fn = functools.partial(jax.nn.gelu, approximate=False)
    elif config.mlp_variant == "geglu_approx":
        act_fn = functools.partial(jax.nn.gelu, approximate=True)
    elif config.mlp_variant == "swiglu":
        act_fn = jax.nn.silu
    else:
        raise ValueError(f"Unsupported MLP variant {config.mlp_variant}")

    embedding = {"embedding": config.embedding_dim}
    neurons = {"neurons": config.mlp_hidden_dim}
    dtype = config.parameter_dtype
    return model_parts.TransformerFeedForward(
        [
            pz.nn.BranchAndMultiplyTogether(
                branches=[
                    pz.nn.NamedGroup(
                        "gate",
                        [
                            pz.nn.Linear.from_config(
                                name=f"{name}/gating_linear",
                                init_base_rng=init_base_rng,
                                input_axes=embedding,
                                output_axes=neurons,
                                dtype=dtype,
                            ),
                            pz.nn.Elementwise(act_fn),
                        ],
                    ),
                    pz.nn.Linear.from_config(
                        name=f"{name}/value_linear",
                        init_base_rng=init_base_rng,
                        input_axes=embedding,
                        output_axes=neurons,
                        dtype=dtype,
                    ),
                ]
            ),
            pz.nn.Linear.from_config(
                name=f"{name}/out_linear",
                init_base_rng=init_base_rng,
                input_axes=neurons,
                output_axes=embedding,
                dtype=dtype,
            ),
        ]
    )


def _attention_type_for_block(
    config: LlamalikeTransformerConfig, block_index: int | None
) -> AttentionType:
    """Resolves the attention type of one block."""
    if isinstance(config.attention_type, AttentionType):
        return config.attention_type
    if block_index is None:
        raise ValueError("block_index must be specified if attention_type is a sequence.")
    types = config.attention_type
    return types[block_index % len(types)]


def build_llamalike_attention(
    name: str,
    init_base_rng: jax.Array | None,
    config: LlamalikeTransformerConfig,
    block_index: int | None = None,
) -> pz.nn.Attention:
    """Builds the (multi-head, multi-query or grouped-query) attention layer.

    Args:
        name: Label prefix of the parameters.
        init_base_rng: Base key for initialization, or None for slots.
        config: The transformer configuration.
        block_index: Index of the block; required when
            ``config.attention_type`` is a sequence.

    Returns:
        The attention layer. Queries are scaled after RoPE; keys and values
        keep the ``"seq"`` axis (this is what a KV cache stores).
    """
    common, common_idx, query_only, query_only_idx = _head_info(config)
    embedding = {"embedding": config.embedding_dim}
    projection = {"projection": config.projection_dim}
    pd = config.parameter_dtype
    ad = config.activation_dtype

    if config.query_scaling_factor == "default":
        scaling = config.projection_dim**-0.5
    else:
        scaling = config.query_scaling_factor
    masked_value = jnp.array(-2.3819763e38, dtype=ad)

    attention_type = _attention_type_for_block(config, block_index)
    masker: pz.nn.Layer
    if isinstance(attention_type, AttentionTypeSlidingWindowCausal):
        masker = pz.nn.ApplyCausalSlidingWindowAttentionMask(
            sliding_window_size=attention_type.window_size,
            masked_out_value=masked_value,
        )
        wavelength = (
            config.local_rope_wavelength
            if config.local_rope_wavelength is not None
            else config.rope_wavelength
        )
        rope_scale = 1.0
    elif isinstance(attention_type, AttentionTypeGlobalCausal):
        masker = pz.nn.ApplyCausalAttentionMask(masked_out_value=masked_value)
        wavelength = config.rope_wavelength
        rope_scale = (
            config.global_scale_factor if config.global_scale_factor is not None else 1.0
        )
    else:
        raise ValueError(f"Unsupported attention type {attention_type}")

    def rope() -> pz.nn.ApplyRoPE:
        return pz.nn.ApplyRoPE(
            positions_input_name="token_positions",
            embedding_axis="projection",
            max_wavelength=wavelength,
            scale_factor=rope_scale,
        )

    def linear(suffix: str, inputs: dict[str, int], outputs: dict[str, int]) -> pz.nn.Layer:
        return pz.nn.Linear.from_config(
            name=f"{name}/{suffix}",
            init_base_rng=init_base_rng,
            input_axes=inputs,
            output_axes=outputs,
            dtype=pd,
        )

    def qk_norm(suffix: str) -> list[pz.nn.Layer]:
        if not config.use_qk_norm:
            return []
        return [
            _rms_norm(f"{name}/{suffix}", init_base_rng, "projection", config.projection_dim, config)
        ]

    query_layers: list[pz.nn.Layer] = [
        linear("query", embedding, {**common, **query_only, **projection}),
        *qk_norm("query_norm"),
        rope(),
        pz.nn.ConstantRescale(by=jnp.array(scaling, dtype=ad)),
    ]
    key_layers: list[pz.nn.Layer] = [
        linear("key", embedding, {**common, **projection}),
        *qk_norm("key_norm"),
        rope(),
    ]
    value_layers: list[pz.nn.Layer] = [linear("value", embedding, {**common, **projection})]

    attn_layers: list[pz.nn.Layer] = [
        pz.nn.NamedEinsum(
            (
                {"seq": "tq", **common_idx, **query_only_idx, "projection": "p"},
                {"seq": "tkv", **common_idx, "projection": "p"},
            ),
            {"seq": "tq", **common_idx, **query_only_idx, "kv_seq": "tkv"},
        )
    ]
    if config.attn_logits_soft_cap is not None:
        attn_layers.append(
            pz.nn.TanhSoftCap(soft_cap=jnp.array(config.attn_logits_soft_cap, dtype=ad))
        )
    attn_layers.append(masker)
    attn_layers.append(pz.nn.Softmax("kv_seq"))

    output_layers: list[pz.nn.Layer] = [
        pz.nn.NamedEinsum(
            (
                {"seq": "tq", **common_idx, **query_only_idx, "kv_seq": "tkv"},
                {"seq": "tkv", **common_idx, "projection": "p"},
            ),
            {"seq": "tq", **common_idx, **query_only_idx, "projection": "p"},
        ),
        linear("output", {**common, **query_only, **projection}, embedding),
    ]

    return pz.nn.Attention(
        input_to_query=pz.nn.Sequential(query_layers),
        input_to_key=pz.nn.Sequential(key_layers),
        input_to_value=pz.nn.Sequential(value_layers),
        query_key_to_attn=pz.nn.Sequential(attn_layers),
        attn_value_to_output=pz.nn.Sequential(output_layers),
    )


def build_llamalike_block(
    name: str,
    init_base_rng: jax.Array | None,
    config: LlamalikeTransformerConfig,
    block_index: int | None = None,
) -> model_parts.TransformerBlock:
    """Builds one pre-norm block: attention residual, then MLP residual.

    Args:
        name: Label prefix of the parameters.
        init_base_rng: Base key for initialization, or None for slots.
        config: The transformer configuration.
        block_index: Index of the block (for per-layer attention types).

    Returns:
        The transformer block.
    """
    width = config.embedding_dim
    attn_delta: list[pz.nn.Layer] = [
        _rms_norm(f"{name}/pre_attention_norm", init_base_rng, "embedding", width, config),
        build_llamalike_attention(f"{name}/attention", init_base_rng, config, block_index=block_index),
    ]
    if config.use_post_attn_norm:
        attn_delta.append(
            _rms_norm(f"{name}/post_attention_norm", init_base_rng, "embedding", width, config)
        )
    ffw_delta: list[pz.nn.Layer] = [
        _rms_norm(f"{name}/pre_ffw_norm", init_base_rng, "embedding", width, config),
        build_llamalike_feedforward(f"{name}/mlp", init_base_rng, config),
    ]
    if config.use_post_ffw_norm:
        ffw_delta.append(
            _rms_norm(f"{name}/post_ffw_norm", init_base_rng, "embedding", width, config)
        )
    return model_parts.TransformerBlock(
        [
            pz.nn.Residual(delta=pz.nn.Sequential(attn_delta)),
            pz.nn.Residual(delta=pz.nn.Sequential(ffw_delta)),
        ]
    )


def build_llamalike_transformer(
    config: LlamalikeTransformerConfig,
    init_base_rng: jax.Array | None = None,
    name: str = "transformer",
) -> model_parts.TransformerLM:
    """Builds a Llama-like transformer language model.

    Args:
        config: The transformer configuration.
        init_base_rng: Base key for random initialization. If None, every
            parameter is an unbound `pz.ParameterSlot` (to be filled by
            `pz.bind_variables`, as the checkpoint converters do).
        name: Label prefix of all parameters.

    Returns:
        The model; called on integer tokens with a ``"seq"`` axis it returns
        logits with a ``"vocabulary"`` axis.

    Raises:
        ValueError: For per-layer attention types combined with a layer stack,
            or a per-layer pattern whose length does not divide the number of
            blocks.
    """
    per_layer_types = not isinstance(config.attention_type, AttentionType)
    if per_layer_types and config.use_layer_stack:
        raise ValueError("Layer stack does not currently support per-layer attention types.")
    if per_layer_types:
        pattern = tuple(config.attention_type)  # type: ignore[arg-type]
        if not pattern or config.num_decoder_blocks % len(pattern) != 0:
            raise ValueError(
                "Per-layer attention types must have a length that divides the number of blocks."
            )

    pd = config.parameter_dtype
    ad = config.activation_dtype
    width = config.embedding_dim
    common, _, query_only, _ = _head_info(config)

    table = pz.nn.EmbeddingTable.from_config(
        name=f"{name}/embedder",
        init_base_rng=init_base_rng,
        vocab_size=config.vocab_size,
        embedding_axes={"embedding": width},
        dtype=pd,
    )
    sublayers: list[pz.nn.Layer] = [pz.nn.EmbeddingLookup(table)]
    if jnp.dtype(ad) != jnp.dtype(pd):
        sublayers.append(pz.nn.CastToDType(ad))
    if config.tie_embedder_and_logits:
        sublayers.append(pz.nn.ConstantRescale(by=jnp.sqrt(width).astype(ad)))

    if config.use_layer_stack:
        sublayers.append(
            pz.nn.LayerStack.from_sublayer_builder(
                builder=build_llamalike_block,
                stack_axis="blocks",
                stack_axis_size=config.num_decoder_blocks,
                init_base_rng=init_base_rng,
                builder_kwargs=dict(name=f"{name}/blocks", config=config),
            )
        )
    else:
        for i in range(config.num_decoder_blocks):
            sublayers.append(build_llamalike_block(f"{name}/block_{i}", init_base_rng, config, i))

    sublayers.append(_rms_norm(f"{name}/final_norm", init_base_rng, "embedding", width, config))
    if config.tie_embedder_and_logits:
        sublayers.append(pz.nn.EmbeddingDecode(table))
    else:
        sublayers.append(
            pz.nn.Linear.from_config(
                name=f"{name}/lm_head",
                init_base_rng=init_base_rng,
                input_axes={"embedding": width},
                output_axes={"vocabulary": config.vocab_size},
            )
        )
    if config.final_logit_softcap:
        sublayers.append(
            pz.nn.TanhSoftCap(soft_cap=jnp.array(config.final_logit_softcap, dtype=ad))
        )

    return model_parts.TransformerLM(
        body=pz.nn.Sequential(sublayers),
        metadata=model_parts.TransformerMetadata(
            common_head_axes=common,
            query_only_head_axes=query_only,
            embedding_dim=width,
            projection_dim=config.projection_dim,
            mlp_hidden_dim=config.mlp_hidden_dim,
            vocab_size=config.vocab_size,
            activation_dtype=ad,
        ),
    )


# ---------------------------------------------------------------------------
# HuggingFace conversion helpers (torch/transformers are never imported here;
# the model objects are passed in by the caller).
# ---------------------------------------------------------------------------


def torch_dtype_to_jax(model: Any) -> jax.typing.DTypeLike:
    """Maps the dtype of a torch model's weights to a JAX dtype.

    Raises:
        KeyError: If the weights are neither float32 nor bfloat16.
    """
    dtype_name = str(model.dtype)
    table = {"torch.float32": jnp.float32, "torch.bfloat16": jnp.bfloat16}
    if dtype_name not in table:
        raise KeyError(
            f"Conversion of a {type(model).__name__} requires float32 or bfloat16 weights,"
            f" but the model's dtype is {dtype_name}."
        )
    return table[dtype_name]


def hf_state_dict_as_jax(model: Any) -> dict[str, jax.Array]:
    """The model's state dict as JAX arrays (zero-copy via DLPack)."""
    return {k: jax.dlpack.from_dlpack(v.detach()) for k, v in model.state_dict().items()}


def rope_theta_from_hf_config(hf_config: Any, legacy_attribute: str = "rope_theta") -> float:
    """Reads the RoPE base from a transformers 5.x or 4.x config."""
    rope_parameters = getattr(hf_config, "rope_parameters", None)
    if isinstance(rope_parameters, dict) and "rope_theta" in rope_parameters:
        return float(rope_parameters["rope_theta"])
    return float(getattr(hf_config, legacy_attribute))


def check_hf_model(
    model: Any,
    function_name: str,
    model_class_name: str,
    config_class_name: str,
    handled: Collection[str],
    ignored: Collection[str],
    allowed_rope_keys: Collection[str] = ("rope_theta", "rope_type"),
) -> None:
    """Checks that `model` is exactly ``transformers.<model_class_name>`` and
    that its config holds nothing the conversion cannot honour.

    Raises:
        RuntimeError: If ``transformers`` is not installed.
        ValueError: For another model class or an unsupported config value.
    """
    try:
        import transformers  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise RuntimeError("HuggingFace transformers is not available") from exc

    if type(model) is not getattr(transformers, model_class_name):  # pylint: disable=unidiomatic-typecheck
        raise ValueError(
            f"{function_name} should be called with a {model_class_name}"
            f" instance, but got {type(model).__name__}."
        )
    check_hf_config_attributes(
        model,
        getattr(transformers, config_class_name)(),
        handled=handled,
        ignored=ignored,
        allowed_rope_keys=allowed_rope_keys,
    )


def check_hf_config_attributes(
    model: Any,
    reference_config: Any,
    handled: Collection[str],
    ignored: Collection[str],
    allowed_rope_keys: Collection[str] = ("rope_theta", "rope_type"),
    check_rope: bool = True,
) -> None:
    """Rejects configuration attributes that the conversion cannot honour.

    An attribute is accepted if it is handled or ignored, or if its value
    equals the default of a freshly built config of the same class. A
    ``rope_parameters`` dict (transformers 5.x) is accepted only for the
    plain ("default") RoPE with no keys beyond `allowed_rope_keys`, unless
    `check_rope` is False (the caller then validates RoPE itself).

    Raises:
        ValueError: Listing every unsupported attribute and its value.
    """
    attrs = model.config.to_dict()
    reference = reference_config.to_dict()
    bad: dict[str, Any] = {}
    for key, value in attrs.items():
        if key == "rope_parameters" and check_rope:
            if not _is_plain_rope(value, allowed_rope_keys):
                bad[key] = value
            continue
        if key in handled or key in ignored:
            continue
        if key in reference and _config_values_equal(value, reference[key]):
            continue
        bad[key] = value
    if bad:
        raise ValueError(
            f"Conversion of a {type(model).__name__} does not support these"
            f" configuration attributes: {bad!r}"
        )


def _is_plain_rope(rope_parameters: Any, allowed_keys: Collection[str]) -> bool:
    """Whether a ``rope_parameters`` value describes unscaled default RoPE."""
    if rope_parameters is None:
        return True
    if not isinstance(rope_parameters, dict):
        return False
    if rope_parameters.get("rope_type", "default") != "default":
        return False
    return set(rope_parameters) <= set(allowed_keys)


def _config_values_equal(a: Any, b: Any) -> bool:
    """Equality that tolerates values (e.g. tensors) without a plain bool ``==``."""
    try:
        return bool(a == b)
    except Exception:  # pylint: disable=broad-except
        return False


def _tag(array: jax.Array, *names: str) -> pz.nx.NamedArray:
    return pz.nx.wrap(array).tag(*names)


def contraction_friendly(array: pz.nx.NamedArrayBase) -> pz.nx.NamedArray:
    """Stores a q/k/v projection weight with ``"embedding"`` as its first axis.

    HuggingFace and Flax layouts put the embedding axis last or in the middle;
    the Linear layer contracts it away, and with a leading contracted axis the
    compiled matmul reads the weight in place instead of transposing it on
    every call (a one-time copy at conversion instead).
    """
    names = list(array.named_shape)
    names.remove("embedding")
    return array.order_as("embedding", *names)


def llamalike_attention_params_from_hf(
    prefix: str,
    converted: dict[str, jax.Array],
    config: LlamalikeTransformerConfig,
) -> dict[str, pz.nx.NamedArrayBase]:
    """Converts HF q/k/v/o projections of one layer to penzai attention weights.

    Args:
        prefix: HF key prefix of the attention module (ending in ``"."``).
        converted: HF state dict as JAX arrays.
        config: The penzai config (decides MHA / MQA / GQA layout).

    Returns:
        Map from label suffix (``"query.weights"`` ...) to named weights.
    """
    kv = config.num_kv_heads
    qm = config.query_head_multiplier
    p = config.projection_dim
    e = config.embedding_dim
    q = converted[f"{prefix}q_proj.weight"]
    k = converted[f"{prefix}k_proj.weight"]
    v = converted[f"{prefix}v_proj.weight"]
    o = converted[f"{prefix}o_proj.weight"]
    result: dict[str, pz.nx.NamedArrayBase]
    if qm == 1:
        result = {
            "query.weights": _tag(q.reshape(kv, p, e), "heads", "projection", "embedding"),
            "key.weights": _tag(k.reshape(kv, p, e), "heads", "projection", "embedding"),
            "value.weights": _tag(v.reshape(kv, p, e), "heads", "projection", "embedding"),
            "output.weights": _tag(o.reshape(e, kv, p), "embedding", "heads", "projection"),
        }
    elif kv == 1:
        result = {
            "query.weights": _tag(
                q.reshape(qm, p, e), "query_heads", "projection", "embedding"
            ),
            "key.weights": _tag(k.reshape(p, e), "projection", "embedding"),
            "value.weights": _tag(v.reshape(p, e), "projection", "embedding"),
            "output.weights": _tag(
                o.reshape(e, qm, p), "embedding", "query_heads", "projection"
            ),
        }
    else:
        result = {
            "query.weights": _tag(
                q.reshape(kv, qm, p, e), "head_groups", "query_heads", "projection", "embedding"
            ),
            "key.weights": _tag(k.reshape(kv, p, e), "head_groups", "projection", "embedding"),
            "value.weights": _tag(v.reshape(kv, p, e), "head_groups", "projection", "embedding"),
            "output.weights": _tag(
                o.reshape(e, kv, qm, p), "embedding", "head_groups", "query_heads", "projection"
            ),
        }
    for key in ("query.weights", "key.weights", "value.weights"):
        result[key] = contraction_friendly(result[key])
    return result


def bind_converted_params(
    skeleton: Any,
    global_params: dict[str, pz.nx.NamedArrayBase],
    block_params: list[dict[str, pz.nx.NamedArrayBase]],
    use_layer_stack: bool,
    name: str = "transformer",
) -> Any:
    """Binds converted weights into a parameter-slot skeleton.

    Args:
        skeleton: Model built with ``init_base_rng=None``.
        global_params: Weights outside the blocks, by label suffix.
        block_params: Per-block weights, by label suffix within a block.
        use_layer_stack: Stack per-block weights along ``"blocks"`` under
            ``{name}/blocks/...`` instead of ``{name}/block_{i}/...``.
        name: Label prefix used when building the skeleton.

    Returns:
        The model with every slot replaced by a `pz.Parameter`.

    Raises:
        ValueError: If a slot is left unfilled.
    """
    params: dict[str, pz.nx.NamedArrayBase] = dict(global_params)
    if use_layer_stack and block_params:
        for key in block_params[0]:
            params[f"blocks/{key}"] = pz.nx.stack([b[key] for b in block_params], "blocks")
    else:
        for i, block in enumerate(block_params):
            for key, value in block.items():
                params[f"block_{i}/{key}"] = value
    model = pz.bind_variables(
        skeleton,
        [pz.Parameter(value=v, label=f"{name}/{k}") for k, v in params.items()],
    )
    pz.nn.assert_no_parameter_slots(model)
    return model


def llamalike_from_huggingface_model(
    model: Any,
    upcast_activations_to_float32: bool = False,
    use_layer_stack: bool = False,
) -> model_parts.TransformerLM:
    """Converts a HuggingFace Llama-style causal LM (no attribute checks).

    The public wrappers (`llama.llama_from_huggingface_model`,
    `mistral.mistral_from_huggingface_model`) validate the model type and
    configuration first; this function trusts its input.

    Args:
        model: A ``LlamaForCausalLM``-like torch model.
        upcast_activations_to_float32: Run activations in float32 even if the
            weights are bfloat16.
        use_layer_stack: Build the blocks as a single `LayerStack`.

    Returns:
        The equivalent penzai model (weights shared zero-copy with torch).
    """
    hf_config = model.config
    num_kv_heads = hf_config.num_key_value_heads
    num_heads = hf_config.num_attention_heads
    query_head_multiplier = num_heads // num_kv_heads
    if num_kv_heads * query_head_multiplier != num_heads:
        raise ValueError(
            f"num_attention_heads ({num_heads}) must be a multiple of"
            f" num_key_value_heads ({num_kv_heads})."
        )
    sliding_window_size = getattr(hf_config, "sliding_window", None)
    attention_type: AttentionType
    if sliding_window_size is None:
        attention_type = AttentionTypeGlobalCausal()
    else:
        attention_type = AttentionTypeSlidingWindowCausal(sliding_window_size)

    param_dtype = torch_dtype_to_jax(model)
    activation_dtype = jnp.float32 if upcast_activations_to_float32 else param_dtype
    mlp_variants = {"silu": "swiglu", "gelu": "geglu_exact", "gelu_new": "geglu_approx"}
    if hf_config.hidden_act not in mlp_variants:
        raise KeyError(
            f"Unsupported hidden_act {hf_config.hidden_act!r}; expected one of"
            f" {sorted(mlp_variants)}."
        )
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // num_heads

    pz_config = LlamalikeTransformerConfig(
        num_kv_heads=num_kv_heads,
        query_head_multiplier=query_head_multiplier,
        embedding_dim=hf_config.hidden_size,
        projection_dim=head_dim,
        mlp_hidden_dim=hf_config.intermediate_size,
        num_decoder_blocks=hf_config.num_hidden_layers,
        vocab_size=hf_config.vocab_size,
        mlp_variant=mlp_variants[hf_config.hidden_act],  # type: ignore[arg-type]
        rope_wavelength=rope_theta_from_hf_config(hf_config),
        tie_embedder_and_logits=False,
        attention_type=attention_type,
        rms_norm_eps=hf_config.rms_norm_eps,
        parameter_dtype=param_dtype,
        activation_dtype=activation_dtype,
        use_layer_stack=use_layer_stack,
    )
    skeleton = build_llamalike_transformer(pz_config, init_base_rng=None, name="transformer")

    converted = hf_state_dict_as_jax(model)
    global_params: dict[str, pz.nx.NamedArrayBase] = {
        "embedder.embeddings": _tag(
            converted["model.embed_tokens.weight"], "vocabulary", "embedding"
        ),
        "final_norm/scale.weights": _tag(converted["model.norm.weight"], "embedding"),
        "lm_head.weights": _tag(converted["lm_head.weight"], "vocabulary", "embedding"),
    }
    block_params = []
    for i in range(pz_config.num_decoder_blocks):
        pre = f"model.layers.{i}."
        block: dict[str, pz.nx.NamedArrayBase] = {
            "pre_attention_norm/scale.weights": _tag(
                converted[f"{pre}input_layernorm.weight"], "embedding"
            ),
            "pre_ffw_norm/scale.weights": _tag(
                converted[f"{pre}post_attention_layernorm.weight"], "embedding"
            ),
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
        for key, value in llamalike_attention_params_from_hf(
            f"{pre}self_attn.", converted, pz_config
        ).items():
            block[f"attention/{key}"] = value
        block_params.append(block)

    return bind_converted_params(skeleton, global_params, block_params, use_layer_stack)
