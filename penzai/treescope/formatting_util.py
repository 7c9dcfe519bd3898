"""Compatibility alias of `treescope.formatting_util` (color helpers)."""

# pylint: disable=g-importing-member,unused-import

from treescope.formatting_util import (
    color_from_string as color_from_string,
    oklch_color as oklch_color,
    parse_simple_color_and_pattern_spec as parse_simple_color_and_pattern_spec,
)
