"""Concrete transformer families (Llama, Mistral, GPT-NeoX, Gemma)."""

from . import gemma, gpt_neox, llama, llamalike_common, mistral

__all__ = ["gemma", "gpt_neox", "llama", "llamalike_common", "mistral"]
