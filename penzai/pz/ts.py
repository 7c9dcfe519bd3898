"""The `pz.ts` alias namespace: treescope rendering utilities.

All names are treescope's own objects, except `display`,
`register_as_default` and `basic_interactive_setup`, which additionally
support objects with the legacy `__penzai_repr__` method.
"""

# pylint: disable=g-importing-member,unused-import,g-bad-import-order

from treescope import (
    ArrayAutovisualizer as ArrayAutovisualizer,
    Autovisualizer as Autovisualizer,
    ChildAutovisualizer as ChildAutovisualizer,
    IPythonVisualization as IPythonVisualization,
    active_autovisualizer as active_autovisualizer,
    active_expansion_strategy as active_expansion_strategy,
    active_renderer as active_renderer,
    default_diverging_colormap as default_diverging_colormap,
    default_magic_autovisualizer as default_magic_autovisualizer,
    default_sequential_colormap as default_sequential_colormap,
    integer_digitbox as integer_digitbox,
    register_autovisualize_magic as register_autovisualize_magic,
    register_context_manager_magic as register_context_manager_magic,
    render_array as render_array,
    render_array_sharding as render_array_sharding,
    render_to_html as render_to_html,
    render_to_text as render_to_text,
    using_expansion_strategy as using_expansion_strategy,
)
from treescope.figures import (
    bolded as bolded,
    indented as indented,
    inline as inline,
    styled as styled,
    text_on_color as text_on_color,
    with_color as with_color,
    with_font_size as with_font_size,
)

from penzai.treescope._compatibility_setup import (
    basic_interactive_setup as basic_interactive_setup,
    display as display,
    register_as_default as register_as_default,
)

vocab_autovisualizer = ArrayAutovisualizer.for_tokenizer
