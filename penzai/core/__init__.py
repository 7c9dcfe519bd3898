"""Core components of penzai: pytree structs, selectors and named axes."""

from penzai.core import partitioning
from penzai.core import selectors
from penzai.core import struct
from penzai.core import syntactic_sugar
from penzai.core import tree_util
