"""GPT-NeoX (and Pythia) transformers.

GPT-NeoX blocks use a parallel residual ``x + Attn(LN1(x)) + MLP(LN2(x))``,
biased projections, LayerNorm with a learned shift, and rotary embeddings on a
leading subset of each head's dimensions.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp

from penzai import pz
from penzai.models.transformer import model_parts
from penzai.models.transformer.variants import llamalike_common

GPTNeoXForCausalLM = Any


@dataclasses.dataclass
class GPTNeoXTransformerConfig:
    """Hyperparameters of a GPT-NeoX transformer.

    Attributes:
        num_attention_heads: Number of attention heads.
        embedding_dim: Width of the residual stream.
        projection_dim: Per-head query/key/value width.
        mlp_hidden_dim: Width of the MLP hidden layer.
        num_decoder_blocks: Number of transformer blocks.
        vocab_size: Vocabulary size.
        activation_fn: MLP activation (``"relu"``, ``"gelu_exact"``,
            ``"gelu_approx"``, or ``"silu"``).
        rope_subset_size: Number of leading per-head dims that get RoPE.
        rope_wavelength: Maximum RoPE wavelength.
        layernorm_epsilon: Epsilon of every LayerNorm.
        parameter_dtype: Dtype of the parameters.
        activation_dtype: Dtype of the activations.
        use_layer_stack: Build the blocks as one `LayerStack`.
    """

    num_attention_heads: int
    embedding_dim: int
    projection_dim: int
    mlp_hidden_dim: int
    num_decoder_blocks: int
    vocab_size: int
    activation_fn: Literal["relu", "selu", "gelu_exact", "gelu_approx"]
    rope_subset_size: int
    rope_wavelength: float
    layernorm_epsilon: float
    parameter_dtype: jax.typing.DTypeLike
    activation_dtype: jax.typing.DTypeLike
    use_layer_stack: bool = False


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu_exact": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_approx": functools.partial(jax.nn.gelu, approximate=True),
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
}


def build_gpt_neox_feedforward(
    name: str,
    init_base_rng: jax.Array | None,
    config: GPTNeoXTransformerConfig,
) -> model_parts.TransformerFeedForward:
    """Builds the MLP ``out(act(in(x)))`` with biases.

    Raises:
        KeyError: If ``config.activation_fn`` is not supported.
    """
    if config.activation_fn not in _ACTIVATIONS:
        raise KeyError(
            f"Unsupported GPT-NeoX activation_fn {config.activation_fn!r}; expected one of"
            f" {sorted(_ACTIVATIONS)}."
        )
    act_fn = _ACTIVATIONS[config.activation_fn]
    return model_parts.TransformerFeedForward(
        [
            pz.nn.Affine.from_config(
                name=f"{name}/in",
                init_base_rng=init_base_rng,
                input_axes={"embedding": config.embedding_dim},
                output_axes={"neurons": config.mlp_hidden_dim},
            ),
            pz.nn.Elementwise(act_fn),
            pz.nn.Affine.from_config(
                name=f"{name}/out",
                init_base_rng=init_base_rng,
                input_axes={"neurons": config.mlp_hidden_dim},
                output_axes={"embedding": config.embedding_dim},
            ),
        ]
    )


def build_gpt_neox_attention(
    name: str,
    init_base_rng: jax.Array | None,
    config: GPTNeoXTransformerConfig,
) -> pz.nn.Attention:
    """Builds multi-head attention with partial RoPE and biased projections."""
    heads = {"heads": config.num_attention_heads}
    projection = {"projection": config.projection_dim}
    embedding = {"embedding": config.embedding_dim}
    pd = config.parameter_dtype
    ad = config.activation_dtype
    masked_value = jnp.array(-2.3819763e38, dtype=ad)

    def affine(suffix: str, inputs: dict[str, int], outputs: dict[str, int]) -> pz.nn.Layer:
        return pz.nn.Affine.from_config(
            name=f"{name}/{suffix}",
            init_base_rng=init_base_rng,
            input_axes=inputs,
            output_axes=outputs,
            dtype=pd,
        )

    def rope() -> pz.nn.ApplyRoPEToSubset:
        return pz.nn.ApplyRoPEToSubset(
            positions_input_name="token_positions",
            embedding_axis="projection",
            max_wavelength=config.rope_wavelength,
            rope_subset_size=config.rope_subset_size,
        )

    return pz.nn.Attention(
        input_to_query=pz.nn.Sequential(
            [
                affine("query", embedding, {**heads, **projection}),
                rope(),
                pz.nn.ConstantRescale(by=jnp.array(config.projection_dim**-0.5, dtype=ad)),
            ]
        ),
        input_to_key=pz.nn.Sequential([affine("key", embedding, {**heads, **projection}), rope()]),
        input_to_value=pz.nn.Sequential([affine("value", embedding, {**heads, **projection})]),
        query_key_to_attn=pz.nn.Sequential(
            [
                pz.nn.NamedEinsum(
                    (
                        {"seq": "tq", "heads": "h", "projection": "p"},
                        {"seq": "tkv", "heads": "h", "projection": "p"},
                    ),
                    {"seq": "tq", "heads": "h", "kv_seq": "tkv"},
                ),
                pz.nn.ApplyCausalAttentionMask(masked_out_value=masked_value),
                pz.nn.Softmax("kv_seq"),
            ]
        ),
        attn_value_to_output=pz.nn.Sequential(
            [
                pz.nn.NamedEinsum(
                    (
                        {"seq": "tq", "heads": "h", "kv_seq": "tkv"},
                        {"seq": "tkv", "heads": "h", "projection": "p"},
                    ),
                    {"seq": "tq", "heads": "h", "projection": "p"},
                ),
                affine("output", {**heads, **projection}, embedding),
            ]
        ),
    )


def _layer_norm(
    name: str, init_base_rng: jax.Array | None, config: GPTNeoXTransformerConfig
) -> pz.nn.LayerNorm:
    return pz.nn.LayerNorm.from_config(
        name=name,
        init_base_rng=init_base_rng,
        across_axes={"embedding": config.embedding_dim},
        epsilon=config.layernorm_epsilon,
        dtype=config.parameter_dtype,
    )


def build_gpt_neox_block(
    name: str,
    init_base_rng: jax.Array | None,
    config: GPTNeoXTransformerConfig,
) -> model_parts.TransformerBlock:
    """Builds one parallel-residual block ``x + Attn(LN1(x)) + MLP(LN2(x))``."""
    return model_parts.TransformerBlock(
        [
            pz.nn.BranchAndAddTogether(
                [
                    pz.nn.Identity(),
                    pz.nn.Sequential(
                        [
                            _layer_norm(f"{name}/pre_attention_norm", init_base_rng, config),
                            build_gpt_neox_attention(f"{name}/attention", init_base_rng, config),
                        ]
                    ),
                    pz.nn.Sequential(
                        [
                            _layer_norm(f"{name}/pre_ffw_norm", init_base_rng, config),
                            build_gpt_neox_feedforward(f"{name}/mlp", init_base_rng, config),
                        ]
                    ),
                ]
            )
        ]
    )


def build_gpt_neox_transformer(
    config: GPTNeoXTransformerConfig,
    init_base_rng: jax.Array | None = None,
    name: str = "transformer",
) -> model_parts.TransformerLM:
    """Builds a GPT-NeoX transformer language model.

    The final LayerNorm uses ``config.layernorm_epsilon`` like every other
    norm (as HuggingFace does).

    Args:
        config: The transformer configuration.
        init_base_rng: Base key for random initialization, or None for slots.
        name: Label prefix of all parameters.

    Returns:
        The model.
    """
    pd = config.parameter_dtype
    ad = config.activation_dtype
    table = pz.nn.EmbeddingTable.from_config(
        name=f"{name}/embedder",
        init_base_rng=init_base_rng,
        vocab_size=config.vocab_size,
        embedding_axes={"embedding": config.embedding_dim},
        dtype=pd,
    )
    sublayers: list[pz.nn.Layer] = [pz.nn.EmbeddingLookup(table)]
    if jnp.dtype(ad) != jnp.dtype(pd):
        sublayers.append(pz.nn.CastToDType(ad))
    if config.use_layer_stack:
        sublayers.append(
            pz.nn.LayerStack.from_sublayer_builder(
                builder=build_gpt_neox_block,
                stack_axis="blocks",
                stack_axis_size=config.num_decoder_blocks,
                init_base_rng=init_base_rng,
                builder_kwargs=dict(name=f"{name}/blocks", config=config),
            )
        )
    else:
        for i in range(config.num_decoder_blocks):
            sublayers.append(build_gpt_neox_block(f"{name}/block_{i}", init_base_rng, config))
    sublayers.append(_layer_norm(f"{name}/final_norm", init_base_rng, config))
    sublayers.append(
        pz.nn.Linear.from_config(
            name=f"{name}/lm_head",
            init_base_rng=init_base_rng,
            input_axes={"embedding": config.embedding_dim},
            output_axes={"vocabulary": config.vocab_size},
        )
    )
    return model_parts.TransformerLM(
        body=pz.nn.Sequential(sublayers),
        metadata=model_parts.TransformerMetadata(
            common_head_axes={"heads": config.num_attention_heads},
            query_only_head_axes={},
            embedding_dim=config.embedding_dim,
            projection_dim=config.projection_dim,
            mlp_hidden_dim=config.mlp_hidden_dim,
            vocab_size=config.vocab_size,
            activation_dtype=ad,
        ),
    )


_HANDLED_ATTRIBUTES = frozenset({
    "hidden_act",
    "hidden_size",
    "intermediate_size",
    "layer_norm_eps",
    "num_attention_heads",
    "num_hidden_layers",
    "rotary_emb_base",
    "rotary_pct",
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
    "torch_dtype",
    "dtype",
    "type_vocab_size",
})

_HF_ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu_approx", "relu": "relu", "silu": "silu"}


def _rotary_fraction(hf_config: Any) -> float:
    """Fraction of each head's dims that get RoPE (transformers 5.x or 4.x)."""
    rope_parameters = getattr(hf_config, "rope_parameters", None)
    if isinstance(rope_parameters, dict):
        return float(rope_parameters.get("partial_rotary_factor", 1.0))
    return float(hf_config.rotary_pct)


def gpt_neox_from_huggingface_model(
    model: GPTNeoXForCausalLM,
    upcast_activations_to_float32: bool = False,
    use_layer_stack: bool = False,
) -> model_parts.TransformerLM:
    """Converts a HuggingFace ``GPTNeoXForCausalLM`` into a penzai `TransformerLM`.

    Args:
        model: The HuggingFace model (float32 or bfloat16 weights).
        upcast_activations_to_float32: Run activations in float32 even if the
            weights are bfloat16.
        use_layer_stack: Build the blocks as a single `LayerStack`.

    Returns:
        The equivalent penzai model.

    Raises:
        RuntimeError: If ``transformers`` is not installed.
        ValueError: If `model` is not exactly a ``GPTNeoXForCausalLM`` or its
            configuration uses unsupported features (listed with values).
    """
    llamalike_common.check_hf_model(
        model,
        "gpt_neox_from_huggingface_model",
        "GPTNeoXForCausalLM",
        "GPTNeoXConfig",
        handled=_HANDLED_ATTRIBUTES,
        ignored=_IGNORED_ATTRIBUTES,
        allowed_rope_keys=("rope_theta", "rope_type", "partial_rotary_factor"),
    )

    hf_config = model.config
    param_dtype = llamalike_common.torch_dtype_to_jax(model)
    activation_dtype = jnp.float32 if upcast_activations_to_float32 else param_dtype
    num_heads = hf_config.num_attention_heads
    head_dim = hf_config.hidden_size // num_heads
    if hf_config.hidden_act not in _HF_ACTIVATIONS:
        raise KeyError(
            f"Unsupported hidden_act {hf_config.hidden_act!r}; expected one of"
            f" {sorted(_HF_ACTIVATIONS)}."
        )
    pz_config = GPTNeoXTransformerConfig(
        num_attention_heads=num_heads,
        embedding_dim=hf_config.hidden_size,
        projection_dim=head_dim,
        mlp_hidden_dim=hf_config.intermediate_size,
        num_decoder_blocks=hf_config.num_hidden_layers,
        vocab_size=hf_config.vocab_size,
        activation_fn=_HF_ACTIVATIONS[hf_config.hidden_act],  # type: ignore[arg-type]
        rope_wavelength=llamalike_common.rope_theta_from_hf_config(
            hf_config, legacy_attribute="rotary_emb_base"
        ),
        rope_subset_size=int(_rotary_fraction(hf_config) * head_dim),
        layernorm_epsilon=hf_config.layer_norm_eps,
        parameter_dtype=param_dtype,
        activation_dtype=activation_dtype,
        use_layer_stack=use_layer_stack,
    )
    skeleton = build_gpt_neox_transformer(pz_config, init_base_rng=None, name="transformer")

    converted = llamalike_common.hf_state_dict_as_jax(model)
    head_key = "embed_out.weight" if "embed_out.weight" in converted else "lm_head.weight"

    def tag(array: jax.Array, *names: str) -> pz.nx.NamedArray:
        return pz.nx.wrap(array).tag(*names)

    e, h, p = hf_config.hidden_size, num_heads, head_dim
    global_params: dict[str, pz.nx.NamedArrayBase] = {
        "embedder.embeddings": tag(converted["gpt_neox.embed_in.weight"], "vocabulary", "embedding"),
        "final_norm/scale.weights": tag(converted["gpt_neox.final_layer_norm.weight"], "embedding"),
        "final_norm/shift.bias": tag(converted["gpt_neox.final_layer_norm.bias"], "embedding"),
        "lm_head.weights": tag(converted[head_key], "vocabulary", "embedding"),
    }
    block_params = []
    for i in range(pz_config.num_decoder_blocks):
        pre = f"gpt_neox.layers.{i}."
        qkv_w = tag(
            converted[f"{pre}attention.query_key_value.weight"].reshape(h, 3, p, e),
            "heads", "qkv", "projection", "embedding",
        )
        qkv_b = tag(
            converted[f"{pre}attention.query_key_value.bias"].reshape(h, 3, p),
            "heads", "qkv", "projection",
        )
        block: dict[str, pz.nx.NamedArrayBase] = {
            "pre_attention_norm/scale.weights": tag(converted[f"{pre}input_layernorm.weight"], "embedding"),
            "pre_attention_norm/shift.bias": tag(converted[f"{pre}input_layernorm.bias"], "embedding"),
            "pre_ffw_norm/scale.weights": tag(
                converted[f"{pre}post_attention_layernorm.weight"], "embedding"
            ),
            "pre_ffw_norm/shift.bias": tag(converted[f"{pre}post_attention_layernorm.bias"], "embedding"),
            "mlp/in/Linear.weights": tag(
                converted[f"{pre}mlp.dense_h_to_4h.weight"], "neurons", "embedding"
            ),
            "mlp/in/AddBias.bias": tag(converted[f"{pre}mlp.dense_h_to_4h.bias"], "neurons"),
            "mlp/out/Linear.weights": tag(
                converted[f"{pre}mlp.dense_4h_to_h.weight"], "embedding", "neurons"
            ),
            "mlp/out/AddBias.bias": tag(converted[f"{pre}mlp.dense_4h_to_h.bias"], "embedding"),
            "attention/output/Linear.weights": tag(
                converted[f"{pre}attention.dense.weight"].reshape(e, h, p),
                "embedding", "heads", "projection",
            ),
            "attention/output/AddBias.bias": tag(converted[f"{pre}attention.dense.bias"], "embedding"),
        }
        for index, part in enumerate(("query", "key", "value")):
            block[f"attention/{part}/Linear.weights"] = llamalike_common.contraction_friendly(
                qkv_w[{"qkv": index}]
            )
            block[f"attention/{part}/AddBias.bias"] = qkv_b[{"qkv": index}]
        block_params.append(block)

    return llamalike_common.bind_converted_params(
        skeleton, global_params, block_params, use_layer_stack
    )
