"""The `Layer` base class of all penzai.nn layers."""

from __future__ import annotations

import abc
import dataclasses
import typing
from typing import Any, Iterable

from penzai.core import struct
from penzai.core import variables as variables_lib


class Layer(struct.Struct, abc.ABC):
  """Abstract base class for neural network layers (one-argument callables).

  A layer is an immutable pytree dataclass called as
  `layer(argument, **side_inputs)`: exactly one positional "main" input plus
  arbitrary keyword side inputs. Every layer accepts and ignores side inputs it
  does not use; combinators forward all side inputs to their children.
  Parameters and state live in `pz.Parameter` / `pz.StateVariable` leaves.
  """

  @abc.abstractmethod
  def __call__(self, argument: Any, /, **side_inputs: Any) -> Any:
    """Runs the layer on `argument`, with optional keyword side inputs."""
    raise NotImplementedError(
        f"{type(self).__name__} must implement __call__(self, argument, /,"
        " **side_inputs)."
    )

  def bind_variables(
      self,
      variables: Iterable[
          variables_lib.AbstractVariable | variables_lib.AbstractVariableValue
      ],
      allow_unused: bool = False,
  ) -> Layer:
    """Returns a copy with matching variable slots replaced by `variables`.

    Same as `pz.bind_variables(self, variables, allow_unused)`; frozen values
    are inserted as they are.
    """
    return variables_lib.bind_variables(
        self, variables, allow_unused=allow_unused
    )

  @typing.final
  def stateless_call(
      self,
      variable_values: Iterable[variables_lib.AbstractVariableValue],
      argument: Any,
      /,
      **side_inputs: Any,
  ) -> tuple[Any, tuple[variables_lib.AbstractVariableValue, ...]]:
    """Calls the layer functionally, with explicit variable values in and out.

    Variables still bound inside the layer are frozen (read-only for the
    call); each given value becomes a temporary mutable copy bound into the
    layer, the argument and the side inputs. Safe to use under JAX transforms.

    Args:
      variable_values: Frozen values for the slots of the layer (and of the
        argument / side inputs).
      argument: The main input.
      **side_inputs: Side inputs forwarded to the layer.

    Returns:
      `(result, new_values)`: the layer output and the updated frozen values,
      in the same order as `variable_values`.
    """
    frozen_self = variables_lib.freeze_variables(self)
    temporaries = [value.unfreeze_as_copy() for value in variable_values]
    bound_self, bound_argument, bound_side_inputs = (
        variables_lib.bind_variables(
            (frozen_self, argument, side_inputs), temporaries
        )
    )
    result = bound_self(bound_argument, **bound_side_inputs)
    return result, tuple(var.freeze() for var in temporaries)

  def call_with_local_vars(
      self,
      argument: Any,
      variable_values: Iterable[variables_lib.AbstractVariableValue],
      /,
      **side_inputs: Any,
  ) -> tuple[Any, tuple[variables_lib.AbstractVariableValue, ...]]:
    """Spelling of `stateless_call` (argument first) used in the V2 migration guide."""
    return self.stateless_call(variable_values, argument, **side_inputs)

  def __treescope_repr__(self, path: str | None, subtree_renderer: Any) -> Any:
    """Treescope hook: renders the layer as a struct, noting its group kind."""
    return _render_layer(self, path, subtree_renderer)


def _group_kind_annotation(layer: Layer) -> str | None:
  """Names the group base of a layer that subclasses a group type, if any."""
  # Imported lazily: grouping imports this module.
  from penzai.nn import grouping  # pylint: disable=g-import-not-at-top

  if isinstance(layer, grouping.Sequential) and (
      type(layer) is not grouping.Sequential
  ):
    return "Sequential"
  if isinstance(layer, grouping.CheckedSequential) and (
      type(layer) is not grouping.CheckedSequential
  ):
    return "CheckedSequential"
  return None


def _render_layer(layer: Layer, path: str | None, subtree_renderer: Any) -> Any:
  """Renders a layer like a struct, plus a ` # Sequential` style annotation."""
  # pylint: disable=g-import-not-at-top
  from treescope import formatting_util
  from treescope import rendering_parts

  from penzai.core._treescope_handlers import struct_handler
  # pylint: enable=g-import-not-at-top

  fields = dataclasses.fields(layer)  # type: ignore[arg-type]
  children = rendering_parts.build_field_children(
      layer,
      path,
      subtree_renderer,
      fields_or_attribute_names=fields,
      attr_style_fn=struct_handler.struct_attr_style_fn_for_fields(fields),
  )
  background_color, background_pattern = (
      formatting_util.parse_simple_color_and_pattern_spec(
          layer.treescope_color(), type(layer).__name__
      )
  )
  kind = _group_kind_annotation(layer)
  annotation = (
      rendering_parts.comment_color(rendering_parts.text(f" # {kind}"))
      if kind is not None
      else None
  )
  return rendering_parts.build_foldable_tree_node_from_children(
      prefix=struct_handler.render_struct_constructor(layer),
      children=children,
      suffix=")",
      path=path,
      background_color=background_color,
      background_pattern=background_pattern,
      first_line_annotation=annotation,
  )
