"""Core components of penzai: pytree structs, selectors and named axes.

Importing this package imports (and exposes) exactly the submodules below;
`variables`, `random_stream` and `auto_order_types` are imported on demand.
"""

from penzai.core import named_axes
from penzai.core import partitioning
from penzai.core import selectors
from penzai.core import shapecheck
from penzai.core import struct
from penzai.core import syntactic_sugar
from penzai.core import tree_util
