"""Gemma 1/2/3: Flax-checkpoint loading and HuggingFace conversion.

The checkpoint tests patch in tiny versions of the presets (the real ones are
billions of parameters) and compare against a hand-written numpy forward pass
that reads the Flax checkpoint dict directly.
"""

from __future__ import annotations

import numpy as np
import pytest

from penzai import pz
from penzai.models.transformer.variants import gemma, llamalike_common

SW = llamalike_common.AttentionTypeSlidingWindowCausal
G = llamalike_common.AttentionTypeGlobalCausal

E, P, F, V, LAYERS = 16, 8, 24, 37, 2


@pz.variable_jit
def _call(model, tokens, side):
    """Runs `model` compiled (one compile per model structure and input shape)."""
    return model(tokens, **side)

TINY_PRESETS = {
    # Same names and architectural switches as the real presets, tiny sizes.
    "gemma_2b": dict(num_decoder_blocks=LAYERS, vocab_size=V, num_kv_heads=1,
                     query_head_multiplier=4, embedding_dim=E, projection_dim=P,
                     mlp_hidden_dim=F),
    "gemma_7b": dict(num_decoder_blocks=3, vocab_size=V, num_kv_heads=3,
                     query_head_multiplier=1, embedding_dim=E, projection_dim=P,
                     mlp_hidden_dim=F),
    "gemma2_9b": dict(num_decoder_blocks=LAYERS, vocab_size=V, num_kv_heads=2,
                      query_head_multiplier=2, embedding_dim=E, projection_dim=P,
                      mlp_hidden_dim=F, attention_type=(SW(3), G()),
                      use_post_attn_norm=True, use_post_ffw_norm=True,
                      final_logit_softcap=3.0, attn_logits_soft_cap=2.0,
                      query_scaling_factor=0.3),
    "gemma3_4b": dict(num_decoder_blocks=LAYERS, vocab_size=V, num_kv_heads=2,
                      query_head_multiplier=2, embedding_dim=E, projection_dim=P,
                      mlp_hidden_dim=F,
                      attention_type=gemma._make_attention_layers_types((SW(3), G()), num_layers=LAYERS),
                      use_qk_norm=True, use_post_attn_norm=True, use_post_ffw_norm=True,
                      global_scale_factor=8.0, rope_wavelength=1_000_000,
                      local_rope_wavelength=10_000),
}


@pytest.fixture
def tiny_presets(monkeypatch):
    monkeypatch.setattr(gemma, "_GEMMA_PRESETS", TINY_PRESETS)


def _make_checkpoint(preset_name: str, seed: int = 0) -> dict:
    """Random Flax-layout checkpoint dict for a tiny preset."""
    rng = np.random.RandomState(seed)
    preset = TINY_PRESETS[preset_name]
    kv, qm = preset["num_kv_heads"], preset["query_head_multiplier"]
    hq = kv * qm

    def w(*shape, scale=0.3):
        return (rng.randn(*shape) * scale).astype(np.float32)

    params = {
        "transformer/embedder": {"input_embedding": w(V, E, scale=1.0)},
        "transformer/final_norm": {"scale": w(E)},
        # Non-transformer entries (e.g. Gemma 3 vision tower) are ignored.
        "vision_encoder/siglip": {"w": w(2, 2)},
    }
    for i in range(preset["num_decoder_blocks"]):
        pre = f"transformer/layer_{i}/"
        params[pre + "pre_attention_norm"] = {"scale": w(E)}
        params[pre + "pre_ffw_norm"] = {"scale": w(E)}
        if preset.get("use_post_attn_norm"):
            params[pre + "post_attention_norm"] = {"scale": w(E)}
            params[pre + "post_ffw_norm"] = {"scale": w(E)}
        if preset.get("use_qk_norm"):
            params[pre + "attn/_query_norm"] = {"scale": w(P)}
            params[pre + "attn/_key_norm"] = {"scale": w(P)}
        transposed = gemma._NEEDS_GATING_TRANSPOSE[preset_name]
        params[pre + "mlp/gating_einsum"] = {"w": w(2, F, E) if transposed else w(2, E, F)}
        params[pre + "mlp/linear"] = {"w": w(F, E)}
        if qm == 1:
            params[pre + "attn/qkv_einsum"] = {"w": w(3, kv, E, P)}
        else:
            params[pre + "attn/q_einsum"] = {"w": w(hq, E, P)}
            params[pre + "attn/kv_einsum"] = {"w": w(2, kv, E, P)}
        params[pre + "attn/attn_vec_einsum"] = {"w": w(hq, P, E)}
    return params


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _rms(x, scale, eps=1e-6):
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps) * (1 + scale)


def _rope(x, positions, wavelength, scale):
    """Rotate-half RoPE on the last axis of x: [..., T, heads, P]."""
    half = x.shape[-1] // 2
    timescale = wavelength ** (2 * np.arange(half) / x.shape[-1])
    theta = positions[:, None] / timescale[None, :] / scale  # [T, half]
    sin, cos = np.sin(theta)[:, None, :], np.cos(theta)[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def _reference_forward(params: dict, preset: dict, preset_name: str, tokens: np.ndarray):
    """Independent numpy Gemma forward pass for one unbatched sequence."""
    p = {k.removeprefix("transformer/"): v for k, v in params.items()}
    kv, qm = preset["num_kv_heads"], preset["query_head_multiplier"]
    seq = len(tokens)
    pos = np.arange(seq)
    types = preset.get("attention_type", G())
    emb = p["embedder"]["input_embedding"]
    x = emb[tokens] * np.sqrt(E)
    for i in range(preset["num_decoder_blocks"]):
        pre = f"layer_{i}/"
        kind = types if not isinstance(types, tuple) else types[i % len(types)]
        h = _rms(x, p[pre + "pre_attention_norm"]["scale"])
        if qm == 1:
            qkv = p[pre + "attn/qkv_einsum"]["w"]
            q, k, v = (np.einsum("te,hep->thp", h, qkv[j]) for j in range(3))
        else:
            q = np.einsum("te,hep->thp", h, p[pre + "attn/q_einsum"]["w"])
            kvw = p[pre + "attn/kv_einsum"]["w"]
            k = np.einsum("te,hep->thp", h, kvw[0])
            v = np.einsum("te,hep->thp", h, kvw[1])
        if preset.get("use_qk_norm"):
            q = _rms(q, p[pre + "attn/_query_norm"]["scale"])
            k = _rms(k, p[pre + "attn/_key_norm"]["scale"])
        if isinstance(kind, SW):
            wavelength = preset.get("local_rope_wavelength") or preset.get("rope_wavelength", 10_000)
            scale = 1.0
        else:
            wavelength = preset.get("rope_wavelength", 10_000)
            scale = preset.get("global_scale_factor") or 1.0
        q = _rope(q, pos, wavelength, scale)
        k = _rope(k, pos, wavelength, scale)
        q = q * preset.get("query_scaling_factor", P**-0.5)
        k = np.repeat(k, qm, axis=1)  # query head h uses kv head h // qm
        v = np.repeat(v, qm, axis=1)
        logits = np.einsum("thp,shp->hts", q, k)
        if preset.get("attn_logits_soft_cap"):
            cap = preset["attn_logits_soft_cap"]
            logits = np.tanh(logits / cap) * cap
        allowed = pos[:, None] >= pos[None, :]
        if isinstance(kind, SW):
            allowed &= pos[:, None] - pos[None, :] < kind.window_size
        logits = np.where(allowed[None], logits, -np.inf)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attn = np.einsum("hts,shp->thp", probs, v)
        out = np.einsum("thp,hpe->te", attn, p[pre + "attn/attn_vec_einsum"]["w"])
        if preset.get("use_post_attn_norm"):
            out = _rms(out, p[pre + "post_attention_norm"]["scale"])
        x = x + out
        h = _rms(x, p[pre + "pre_ffw_norm"]["scale"])
        gating = p[pre + "mlp/gating_einsum"]["w"]
        if gemma._NEEDS_GATING_TRANSPOSE[preset_name]:
            gating = gating.transpose(0, 2, 1)
        hidden = _gelu_tanh(h @ gating[0]) * (h @ gating[1])
        out = hidden @ p[pre + "mlp/linear"]["w"]
        if preset.get("use_post_ffw_norm"):
            out = _rms(out, p[pre + "post_ffw_norm"]["scale"])
        x = x + out
    x = _rms(x, p["final_norm"]["scale"])
    logits = x @ emb.T
    if preset.get("final_logit_softcap"):
        cap = preset["final_logit_softcap"]
        logits = np.tanh(logits / cap) * cap
    return logits


TOKENS = np.array([[3, 17, 5, 9, 30, 1, 22], [8, 8, 2, 36, 11, 4, 0]])


@pytest.mark.parametrize("preset_name", ["gemma_2b", "gemma_7b", "gemma2_9b", "gemma3_4b"])
def test_checkpoint_matches_reference_forward(tiny_presets, preset_name):
    ckpt = _make_checkpoint(preset_name)
    model = gemma.gemma_from_pretrained_checkpoint(ckpt, preset_name=preset_name)
    out = _call(model, pz.nx.wrap(TOKENS).tag("batch", "seq"), {})
    ours = np.asarray(out.unwrap("batch", "seq", "vocabulary"))
    for row in range(TOKENS.shape[0]):
        expected = _reference_forward(ckpt, TINY_PRESETS[preset_name], preset_name, TOKENS[row])
        np.testing.assert_allclose(ours[row], expected, atol=2e-4, rtol=1e-4)


def test_checkpoint_structure_and_tied_embeddings(tiny_presets):
    ckpt = _make_checkpoint("gemma3_4b")
    model = gemma.gemma_from_pretrained_checkpoint(ckpt, preset_name="gemma3_4b")
    params = pz.select(model).at_instances_of(pz.Parameter).get_sequence()
    embed = [p for p in params if p.label == "transformer/embedder.embeddings"]
    assert len(embed) == 2 and embed[0] is embed[1]  # lookup and decode share it
    labels = {p.label for p in params}
    assert "transformer/block_1/attention/query_norm/scale.weights" in labels
    assert "transformer/block_0/post_ffw_norm/scale.weights" in labels
    assert "transformer/lm_head.weights" not in labels
    final = [p for p in params if p.label == "transformer/final_norm/scale.weights"][0]
    np.testing.assert_allclose(
        np.asarray(final.value.unwrap("embedding")),
        1 + ckpt["transformer/final_norm"]["scale"],
        rtol=1e-6,
    )
    ropes = pz.select(model).at_instances_of(pz.nn.ApplyRoPE).get_sequence()
    assert {(r.max_wavelength, r.scale_factor) for r in ropes} == {
        (10_000, 1.0), (1_000_000, 8.0)
    }


def test_auto_preset_detection(tiny_presets):
    # 2 layers without qk norm -> first matching preset is gemma_2b;
    # with qk norm -> gemma3_4b; 3 layers -> gemma_7b.
    assert gemma._detect_preset(
        {k.removeprefix("transformer/"): v for k, v in _make_checkpoint("gemma_2b").items()}
    ) == "gemma_2b"
    model = gemma.gemma_from_pretrained_checkpoint(_make_checkpoint("gemma3_4b"))
    assert model.metadata.common_head_axes == {"head_groups": 2}
    assert pz.select(model).at_instances_of(pz.nn.RMSLayerNorm).count() == 2 * 6 + 1
    model = gemma.gemma_from_pretrained_checkpoint(_make_checkpoint("gemma_7b"))
    assert model.metadata.common_head_axes == {"heads": 3}


def test_auto_preset_detection_failure(tiny_presets):
    ckpt = {k: v for k, v in _make_checkpoint("gemma_2b").items() if "layer_1/" not in k}
    with pytest.raises(
        ValueError, match="Could not determine preset for model with 1 layers and qk norm False."
    ):
        gemma.gemma_from_pretrained_checkpoint(ckpt)


def test_unknown_preset_is_key_error(tiny_presets):
    with pytest.raises(KeyError):
        gemma.gemma_from_pretrained_checkpoint(_make_checkpoint("gemma_2b"), preset_name="gemma9")


def test_layer_stack_for_gemma1_and_error_for_gemma2(tiny_presets):
    ckpt = _make_checkpoint("gemma_2b")
    stacked = gemma.gemma_from_pretrained_checkpoint(ckpt, preset_name="gemma_2b", use_layer_stack=True)
    plain = gemma.gemma_from_pretrained_checkpoint(ckpt, preset_name="gemma_2b")
    tokens = pz.nx.wrap(TOKENS).tag("batch", "seq")
    np.testing.assert_allclose(
        np.asarray(_call(stacked, tokens, {}).unwrap("batch", "seq", "vocabulary")),
        np.asarray(_call(plain, tokens, {}).unwrap("batch", "seq", "vocabulary")),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="Layer stack does not currently support per-layer attention types."):
        gemma.gemma_from_pretrained_checkpoint(
            _make_checkpoint("gemma2_9b"), preset_name="gemma2_9b", use_layer_stack=True
        )


def test_real_presets_are_consistent():
    presets = gemma._GEMMA_PRESETS
    assert list(presets) == list(gemma._NEEDS_GATING_TRANSPOSE)
    assert presets["gemma3_12b"]["embedding_dim"] == 3840
    assert presets["gemma3_27b"]["query_scaling_factor"] == 168**-0.5
    assert presets["gemma2_27b"]["query_scaling_factor"] == 144**-0.5
    types = presets["gemma3_1b"]["attention_type"]
    assert len(types) == 26 and types[5] == G() and types[0] == SW(512) and types[24] == SW(512)
    for preset in presets.values():
        config = llamalike_common.LlamalikeTransformerConfig(
            **preset, mlp_variant="geglu_approx", tie_embedder_and_logits=True
        )
        assert config.num_decoder_blocks == preset["num_decoder_blocks"]


def test_make_attention_layers_types():
    assert gemma._make_attention_layers_types((SW(2), SW(2), G()), num_layers=7) == (
        SW(2), SW(2), G(), SW(2), SW(2), G(), SW(2)
    )


# ---------------------------------------------------------------------------
# HuggingFace Gemma / Gemma 2 / Gemma 3
# ---------------------------------------------------------------------------

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

HF_COMMON = dict(
    vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
    attn_implementation="eager",
)


def _perturbed(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def _hf_gemma(generation: int, **extra):
    torch.manual_seed(1)
    if generation == 1:
        config = transformers.GemmaConfig(**{**HF_COMMON, "num_attention_heads": 4,
                                             "num_key_value_heads": 1, "head_dim": 16, **extra})
        return _perturbed(transformers.GemmaForCausalLM(config))
    if generation == 2:
        config = transformers.Gemma2Config(**{**HF_COMMON, "num_attention_heads": 4,
                                              "num_key_value_heads": 2, "head_dim": 16,
                                              "sliding_window": 3, "query_pre_attn_scalar": 20,
                                              "attn_logit_softcapping": 2.0,
                                              "final_logit_softcapping": 5.0, **extra})
        return _perturbed(transformers.Gemma2ForCausalLM(config))
    config = transformers.Gemma3TextConfig(**{
        **HF_COMMON, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 3,
        "query_pre_attn_scalar": 20,
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 10_000.0},
        },
        **extra,
    })
    return _perturbed(transformers.Gemma3ForCausalLM(config))


def _compare_hf(hf, model, tokens=TOKENS[:, 1:], atol=1e-4):
    with torch.no_grad():
        expected = hf(torch.tensor(tokens)).logits.numpy()
    out = _call(model, pz.nx.wrap(tokens).tag("batch", "seq"), {})
    np.testing.assert_allclose(
        np.asarray(out.unwrap("batch", "seq", "vocabulary")), expected, atol=atol
    )


@pytest.mark.parametrize("generation", [1, 2, 3])
def test_huggingface_gemma_logits_match(generation):
    hf = _hf_gemma(generation)
    model = gemma.gemma_from_huggingface_model(hf)
    _compare_hf(hf, model)
    params = pz.select(model).at_instances_of(pz.Parameter).get_sequence()
    embed = [p for p in params if p.label == "transformer/embedder.embeddings"]
    assert len(embed) == 2 and embed[0] is embed[1]


def test_huggingface_gemma3_structure():
    model = gemma.gemma_from_huggingface_model(_hf_gemma(3))
    masks = pz.select(model).at_instances_of(
        (pz.nn.ApplyCausalAttentionMask, pz.nn.ApplyCausalSlidingWindowAttentionMask)
    ).get_sequence()
    assert isinstance(masks[0], pz.nn.ApplyCausalSlidingWindowAttentionMask)
    assert isinstance(masks[1], pz.nn.ApplyCausalAttentionMask)
    ropes = pz.select(model).at_instances_of(pz.nn.ApplyRoPE).get_sequence()
    assert [(r.max_wavelength, r.scale_factor) for r in ropes[::2]] == [(100.0, 1.0), (10_000.0, 8.0)]
    assert model.metadata.projection_dim == 16  # explicit head_dim, not hidden // heads


def test_huggingface_gemma_untied_embeddings():
    hf = _hf_gemma(1, tie_word_embeddings=False)
    model = gemma.gemma_from_huggingface_model(hf)
    labels = [p.label for p in pz.select(model).at_instances_of(pz.Parameter).get_sequence()]
    assert labels.count("transformer/embedder.embeddings") == 1
    assert "transformer/lm_head.weights" in labels
    _compare_hf(hf, model)


def test_huggingface_gemma_layer_stack_and_rejections():
    hf = _hf_gemma(1)
    _compare_hf(hf, gemma.gemma_from_huggingface_model(hf, use_layer_stack=True))
    with pytest.raises(ValueError, match="Layer stack does not currently support"):
        gemma.gemma_from_huggingface_model(_hf_gemma(2), use_layer_stack=True)
    with pytest.raises(ValueError, match="attention_bias"):
        gemma.gemma_from_huggingface_model(_hf_gemma(1, attention_bias=True))
    yarn = _hf_gemma(2, rope_parameters={"rope_type": "yarn", "factor": 2.0, "rope_theta": 100.0})
    with pytest.raises(ValueError, match="rope_type 'yarn'"):
        gemma.gemma_from_huggingface_model(yarn)
    with pytest.raises(ValueError, match="but got LlamaForCausalLM"):
        gemma.gemma_from_huggingface_model(
            transformers.LlamaForCausalLM(transformers.LlamaConfig(
                vocab_size=V, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=2))
        )


def test_huggingface_gemma3_cached_decoding_matches_uncached():
    from penzai.models.transformer import sampling_mode

    model = gemma.gemma_from_huggingface_model(_hf_gemma(3))
    tokens = pz.nx.wrap(TOKENS).tag("batch", "seq")
    expected = np.asarray(_call(model, tokens, {}).unwrap("batch", "seq", "vocabulary"))
    sampler = sampling_mode.KVCachingTransformerLM.from_uncached(
        model, cache_len=8, batch_axes={"batch": 2}
    )
    first = _call(sampler, tokens[{"seq": pz.slice[:5]}], {})
    second = _call(sampler, tokens[{"seq": pz.slice[5:6]}], {})
    got = np.concatenate(
        [np.asarray(x.unwrap("batch", "seq", "vocabulary")) for x in (first, second)], axis=1
    )
    np.testing.assert_allclose(got, expected[:, :6], atol=1e-5)
