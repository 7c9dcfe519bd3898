"""Generic decoder-only transformer language models and their variants."""

from . import model_parts, sampling_mode, simple_decoding_loop, variants

__all__ = ["model_parts", "sampling_mode", "simple_decoding_loop", "variants"]
