"""Compatibility alias of `treescope.repr_lib` (helpers for custom reprs)."""

# pylint: disable=g-importing-member,unused-import

from treescope.repr_lib import (
    handle_custom_listlike as handle_custom_listlike,
    handle_custom_mapping as handle_custom_mapping,
    render_dictionary_wrapper as render_dictionary_wrapper,
    render_enumlike_item as render_enumlike_item,
    render_list_wrapper as render_list_wrapper,
    render_object_constructor as render_object_constructor,
)
