"""Compatibility shims between penzai and the external `treescope` package.

Treescope used to live inside penzai; it is now a separate package. This
package keeps the old module paths (`formatting_util`, `repr_lib`) importable
and provides rendering helpers that also understand the legacy
`__penzai_repr__` method.
"""

from penzai.treescope import _compatibility_setup
from penzai.treescope import formatting_util
from penzai.treescope import repr_lib
