"""Treescope rendering and array-visualization support for named arrays.

Named arrays render as a collapsed summary such as
`<NamedArray float32(| foo:2, bar:3) ≈2.5 ±1.7 ... (wrapping jax.Array)>`,
expanding to their fields. `NamedArrayAdapter` lets treescope's array
visualizer (`treescope.render_array`, autovisualization) draw them with their
axis names.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from treescope import dtype_util
from treescope import lowering
from treescope import ndarray_adapters
from treescope import renderers
from treescope import rendering_parts
from treescope.external import jax_support

from penzai.core import named_axes
from penzai.core._treescope_handlers import struct_handler


def _is_concrete_jax_array(data: Any) -> bool:
  return isinstance(data, jax.Array) and not isinstance(data, jax.core.Tracer)


def named_array_and_contained_type_summary(
    named_array: named_axes.NamedArrayBase,
    inspect_device_data: bool = True,
) -> tuple[str, str]:
  """Summarizes a named array's shape (and maybe data) and its wrapped type.

  Args:
    named_array: A valid named array.
    inspect_device_data: Whether statistics of concrete JAX data may be
      computed and included.

  Returns:
    A tuple `(summary, contained_type)`, e.g.
    `("float32(| a:2) ≈0.5 ±0.5 [≥0.0, ≤1.0] zero:1 nonzero:1", "jax.Array")`.
  """
  data = named_array.data_array  # type: ignore[attr-defined]
  if isinstance(data, np.ndarray):
    contained = "numpy.ndarray"
  elif _is_concrete_jax_array(data):
    contained = "jax.Array"
  else:
    contained = type(data).__name__

  if isinstance(named_array, named_axes.NamedArray) and not named_array.named_axes:
    data_repr = repr(named_array.unwrap())
    if "\n" not in data_repr:
      return data_repr, contained

  positional = ", ".join(str(size) for size in named_array.positional_shape)
  separator = " |" if named_array.positional_shape else "|"
  named = ", ".join(
      f"{name}:{size}" for name, size in named_array.named_shape.items()
  )
  if named:
    named = " " + named
  summary = (
      f"{dtype_util.get_dtype_name(named_array.dtype)}"
      f"({positional}{separator}{named})"
  )
  if (
      inspect_device_data
      and _is_concrete_jax_array(data)
      and jax_support.safe_to_summarize(data)
  ):
    summary += jax_support.summarize_array_data(data)
  return summary, contained


def handle_named_arrays(
    node: Any,
    path: str | None,
    subtree_renderer: renderers.TreescopeSubtreeRenderer,
) -> Any:
  """Treescope handler for named arrays.

  Invalid named arrays (whose `check_valid` fails) are rendered like ordinary
  structs; other nodes give NotImplemented.
  """
  if not isinstance(node, named_axes.NamedArrayBase):
    return NotImplemented
  try:
    node.check_valid()
  except Exception:  # pylint: disable=broad-exception-caught
    return struct_handler.handle_structs(node, path, subtree_renderer)

  type_name = type(node).__name__
  dataclass_fields = dataclasses.fields(node)  # type: ignore[arg-type]
  children = rendering_parts.build_field_children(
      node,
      path,
      subtree_renderer,
      fields_or_attribute_names=dataclass_fields,
      attr_style_fn=struct_handler.struct_attr_style_fn_for_fields(
          dataclass_fields
      ),
  )

  def make_label(inspect_device_data: bool) -> rendering_parts.RenderableTreePart:
    summary, contained = named_array_and_contained_type_summary(
        node, inspect_device_data=inspect_device_data
    )
    return rendering_parts.fold_condition(
        collapsed=rendering_parts.abbreviation_color(
            rendering_parts.text(
                f"<{type_name} {summary} (wrapping {contained})>"
            )
        ),
        expanded=rendering_parts.siblings(
            rendering_parts.maybe_qualified_type_name(type(node)),
            "(",
            rendering_parts.comment_color(rendering_parts.text(f"  # {summary}")),
        ),
    )

  def placeholder() -> rendering_parts.RenderableTreePart:
    return rendering_parts.deferred_placeholder_style(make_label(False))

  def main_thunk(
      placeholder_expand_state: rendering_parts.ExpandState | None,
  ) -> rendering_parts.RenderableTreePart:
    del placeholder_expand_state
    return make_label(True)

  label = lowering.maybe_defer_rendering(
      main_thunk=main_thunk, placeholder_thunk=placeholder
  )
  return rendering_parts.build_custom_foldable_tree_node(
      label=label,
      contents=rendering_parts.fold_condition(
          expanded=rendering_parts.siblings(
              rendering_parts.indented_children(children), ")"
          )
      ),
      path=path,
      expand_state=rendering_parts.ExpandState.COLLAPSED,
  )


class NamedArrayAdapter(ndarray_adapters.NDArrayAdapter[named_axes.NamedArrayBase]):
  """Treescope array adapter for penzai named arrays."""

  def get_axis_info_for_array_data(
      self, array: named_axes.NamedArrayBase
  ) -> tuple[ndarray_adapters.AxisInfo, ...]:
    """Axis info for each *data* axis (of the view form) of the array."""
    view = array.as_namedarrayview()
    infos: list[Any] = [None] * len(view.data_shape)
    for name, data_axis in view.data_axis_for_name.items():
      infos[data_axis] = ndarray_adapters.NamedPositionlessAxisInfo(
          axis_name=name, size=view.data_shape[data_axis]
      )
    for logical_index, data_axis in enumerate(view.data_axis_for_logical_axis):
      infos[data_axis] = ndarray_adapters.PositionalAxisInfo(
          axis_logical_index=logical_index, size=view.data_shape[data_axis]
      )
    return tuple(infos)

  def get_array_data_with_truncation(
      self,
      array: named_axes.NamedArrayBase,
      mask: Any,
      edge_items_per_axis: tuple[int | None, ...],
  ) -> tuple[np.ndarray, np.ndarray]:
    """Truncated data and mask, laid out like the array's data axes."""
    view = array.as_namedarrayview()
    data = jnp.asarray(view.data_array)
    if mask is None:
      return jax_support.JAXArrayAdapter().get_array_data_with_truncation(
          data, None, edge_items_per_axis
      )
    if not isinstance(mask, named_axes.NamedArrayBase):
      mask = named_axes.wrap(mask)
    extra_names = set(mask.named_shape) - set(view.named_shape)
    if extra_names:
      raise ValueError(
          "Valid mask must be broadcastable to the shape of `array`, but it"
          f" had extra axis names {extra_names}"
      )
    array_positional = tuple(view.positional_shape)
    mask_positional = tuple(mask.positional_shape)
    suffix = array_positional[len(array_positional) - len(mask_positional) :]
    if len(mask_positional) > len(array_positional) or any(
        m not in (1, a) for m, a in zip(mask_positional, suffix)
    ):
      raise ValueError(
          "Valid mask must be broadcastable to the shape of `array`, but its"
          f" positional shape {mask_positional} does not match (a suffix of)"
          f" the positional shape {array_positional} of `array`"
      )
    prefixed = mask.with_positional_prefix()
    mask_data = jnp.asarray(prefixed.data_array)
    mask_data = mask_data.reshape(
        (1,) * (len(array_positional) - len(mask_positional)) + mask_data.shape
    )
    mask_names = collections.OrderedDict(prefixed.named_axes)
    for name in view.named_shape:
      if name not in mask_names:
        mask_data = mask_data[..., None]
        mask_names[name] = 1
    broadcast_mask = named_axes.NamedArray(
        named_axes=mask_names, data_array=mask_data
    ).order_like(view)
    return jax_support.JAXArrayAdapter().get_array_data_with_truncation(
        data, broadcast_mask.data_array, edge_items_per_axis
    )

  def get_array_summary(
      self, array: named_axes.NamedArrayBase, fast: bool
  ) -> str:
    """One-line summary; statistics only when `fast` is False."""
    summary, contained = named_array_and_contained_type_summary(
        array, inspect_device_data=not fast
    )
    return f"{type(array).__name__} {summary} (wrapping {contained})"

  def get_numpy_dtype(self, array: named_axes.NamedArrayBase) -> np.dtype | None:
    """The array's dtype if it is a NumPy dtype, else None."""
    dtype = array.dtype
    if isinstance(dtype, np.dtype):
      return dtype
    return None

  def get_sharding_info_for_array_data(
      self, array: named_axes.NamedArrayBase
  ) -> ndarray_adapters.ShardingInfo | None:
    """Sharding of the wrapped data, if it is a JAX array."""
    view = array.as_namedarrayview()
    if not isinstance(view.data_array, jax.Array):
      return None
    return jax_support.JAXArrayAdapter().get_sharding_info_for_array_data(
        view.data_array
    )

  def should_autovisualize(self, array: named_axes.NamedArrayBase) -> bool:
    """True iff the data is a concrete, non-deleted JAX array."""
    data = array.data_array  # type: ignore[attr-defined]
    return _is_concrete_jax_array(data) and not data.is_deleted()
