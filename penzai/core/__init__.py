"""Core components of penzai: pytree structs, selectors and named axes."""

from penzai.core import struct
