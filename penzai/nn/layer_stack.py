"""`LayerStack`: a sequence of identically-structured layers run by `scan`.

The layers are stored once, as a "prototype" layer whose per-layer named
arrays carry an extra stack axis. Calling the stack runs the prototype once
per slice of that axis under `jax.lax.scan`, so a deep model is traced once.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from collections.abc import Callable, Hashable
from typing import Any

import jax

from penzai.core import named_axes
from penzai.core import struct
from penzai.core import tree_util as pz_tree_util
from penzai.core import variables
from penzai.nn import layer as layer_base

AxisName = named_axes.AxisName


class LayerStackVarBehavior(enum.Enum):
  """How a state variable inside a `LayerStack` relates to the layers.

  SHARED: one value threaded through all layers in order.
  PER_LAYER: each layer owns a slice along the stack axis.
  """

  SHARED = enum.auto()
  PER_LAYER = enum.auto()


@dataclasses.dataclass(frozen=True)
class LayerStackGetAttrKey(pz_tree_util.CustomGetAttrKey):
  """Key-path entry of a `LayerStack`'s child, recording the stack axis.

  It prints like an ordinary attribute access (`.stacked_sublayers`), but
  lets code walking key paths discover that a subtree lives inside a stack.
  """

  stack_axis: AxisName
  stack_axis_size: int


def layerstack_axes_from_keypath(
    keypath: tuple[Any, ...],
) -> dict[AxisName, int]:
  """Returns the stack axes (outer to inner) of all stacks along `keypath`."""
  return {
      key.stack_axis: key.stack_axis_size
      for key in keypath
      if isinstance(key, LayerStackGetAttrKey)
  }


def _is_named(x: Any) -> bool:
  return isinstance(x, named_axes.NamedArrayBase)


def _to_stack_prefix(arr: named_axes.NamedArrayBase, axis: AxisName) -> Any:
  """Moves `axis` to the front of the data as a positional axis."""
  return arr.untag_prefix(axis).with_positional_prefix()


def _restore_stack_axis(arr: named_axes.NamedArrayBase, axis: AxisName) -> Any:
  """Names the leading positional axis `axis` (the first named axis)."""
  if len(arr.positional_shape) == 1:
    return arr.tag(axis)
  return arr.tag_prefix(axis).with_positional_prefix()


def _stack_axis_paths(tree: Any, axis: AxisName) -> list[str]:
  """Key paths of named arrays in `tree` that have the named axis `axis`."""
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_named)[0]
  return [
      jax.tree_util.keystr(path)
      for path, leaf in leaves
      if _is_named(leaf) and axis in leaf.named_shape
  ]


@struct.pytree_dataclass
class LayerStack(layer_base.Layer):
  """A stack of layers with identical structure, called under `jax.lax.scan`.

  Attributes:
    stacked_sublayers: The prototype layer. Its named arrays that have
      `stack_axis` differ per layer (layer `i` sees slice `i`); everything
      else is shared by all layers.
    stack_axis: Name of the stack axis.
    stack_axis_size: Number of layers.
  """

  stacked_sublayers: layer_base.Layer
  stack_axis: AxisName = dataclasses.field(metadata={"pytree_node": False})
  stack_axis_size: int = dataclasses.field(metadata={"pytree_node": False})

  def key_for_field(self, field_name: str) -> Hashable:
    """Uses a `LayerStackGetAttrKey` so key paths reveal the stack axis."""
    return LayerStackGetAttrKey(
        name=field_name,
        stack_axis=self.stack_axis,
        stack_axis_size=self.stack_axis_size,
    )

  def _split_state_vars(
      self,
      sub_vars: tuple[Any, ...],
      side_vars: tuple[Any, ...],
  ) -> tuple[list[variables.StateVariable], list[variables.StateVariable]]:
    """Sorts state variables into shared and per-layer lists, validating."""
    shared: list[variables.StateVariable] = list(side_vars)
    side_by_label = {var.label: var for var in side_vars}
    per_layer: list[variables.StateVariable] = []
    for var in sub_vars:
      axes = var.metadata.get("layerstack_axes")
      if not isinstance(axes, dict) or self.stack_axis not in axes:
        raise ValueError(
            "All variables in a layer stack must have a `layerstack_axes`"
            " metadata field with an entry for the stack axis"
            f" {self.stack_axis!r} (a LayerStackVarBehavior); variable"
            f" {var.label!r} has metadata {var.metadata!r}."
        )
      behavior = axes[self.stack_axis]
      if behavior == LayerStackVarBehavior.SHARED:
        bad = _stack_axis_paths(var.value, self.stack_axis)
        if bad:
          raise ValueError(
              f"Shared variable {var.label!r} in a layer stack must not have"
              f" the stack axis {self.stack_axis!r}, but it does at key paths"
              f" {bad}."
          )
        if var.label in side_by_label:
          if side_by_label[var.label] is not var:
            raise ValueError(
                f"Shared variable {var.label!r} in the layer stack conflicts"
                " with a different variable with the same label passed as a"
                " side input."
            )
        else:
          shared.append(var)
      elif behavior == LayerStackVarBehavior.PER_LAYER:
        if var.label in side_by_label:
          raise ValueError(
              f"Per-layer variable {var.label!r} in the layer stack must not"
              " also be passed as a side input."
          )
        leaves = jax.tree_util.tree_flatten_with_path(
            var.value, is_leaf=_is_named
        )[0]
        for path, leaf in leaves:
          if not (_is_named(leaf) and self.stack_axis in leaf.named_shape):
            raise ValueError(
                f"Per-layer variable {var.label!r} in a layer stack must only"
                " contain NamedArrays with the stack axis"
                f" {self.stack_axis!r}, but the leaf at"
                f" {jax.tree_util.keystr(path)} is {leaf!r}."
            )
        per_layer.append(var)
      else:
        raise ValueError(
            f"Unsupported layer stack behavior {behavior!r} for variable"
            f" {var.label!r}; expected a LayerStackVarBehavior."
        )
    return shared, per_layer

  def __call__(self, argument: Any, /, **side_inputs: Any) -> Any:
    """Runs the stacked layers in sequence on `argument`."""
    with jax.named_scope(type(self).__name__):
      return self._run(argument, side_inputs)

  def _run(self, argument: Any, side_inputs: dict[str, Any]) -> Any:
    axis = self.stack_axis
    frozen = variables.freeze_params(self.stacked_sublayers)
    sublayer, sub_vars = variables.unbind_state_vars(frozen)
    pure_side_inputs, side_vars = variables.unbind_state_vars(side_inputs)
    # Named arrays with the stack axis are scanned over; everything else in
    # the sublayer is closed over unchanged.
    leaves, treedef = jax.tree_util.tree_flatten(sublayer, is_leaf=_is_named)
    others = {
        type(leaf).__name__
        for leaf in (*leaves, *jax.tree_util.tree_leaves(pure_side_inputs))
        if isinstance(leaf, variables.AbstractVariable)
    }
    if others:
      raise ValueError(
          f"Unsupported variable types found in layer stack: {others}"
      )
    shared, per_layer = self._split_state_vars(sub_vars, side_vars)  # type: ignore[arg-type]
    scanned_index = [
        i
        for i, leaf in enumerate(leaves)
        if _is_named(leaf) and axis in leaf.named_shape
    ]
    scanned_leaves = [_to_stack_prefix(leaves[i], axis) for i in scanned_index]
    per_layer_values = [
        jax.tree_util.tree_map(
            lambda x: _to_stack_prefix(x, axis), var.value, is_leaf=_is_named
        )
        for var in per_layer
    ]
    shared_values = [var.value for var in shared]
    for i, leaf in zip(scanned_index, scanned_leaves):
      if leaf.positional_shape[0] != self.stack_axis_size:
        raise ValueError(
            f"LayerStack with stack_axis_size={self.stack_axis_size} found a"
            f" named array with {axis!r} of size {leaf.positional_shape[0]}."
        )

    def step(carry: Any, xs: Any) -> Any:
      value, shared_vals = carry
      sliced_leaves, per_layer_vals = xs
      new_leaves = list(leaves)
      for i, leaf in zip(scanned_index, sliced_leaves):
        new_leaves[i] = leaf
      layer = jax.tree_util.tree_unflatten(treedef, new_leaves)
      var_values = [
          variables.StateVariableValue(
              label=var.label, value=val, metadata=var.metadata
          )
          for var, val in zip(shared + per_layer, shared_vals + per_layer_vals)
      ]
      out, new_var_values = layer.stateless_call(
          var_values, value, **pure_side_inputs
      )
      new_vals = [v.value for v in new_var_values]
      try:
        out = named_axes.order_like(out, value)
      except (ValueError, TypeError) as exc:
        raise ValueError(
            "Each layer in a LayerStack must return an output with the same"
            " structure and named shape as its input."
        ) from exc
      new_shared = named_axes.order_like(
          new_vals[: len(shared)], shared_vals
      )
      new_per_layer = named_axes.order_like(
          new_vals[len(shared) :], per_layer_vals
      )
      return (out, new_shared), new_per_layer

    (result, final_shared), stacked_per_layer = jax.lax.scan(
        step,
        (argument, shared_values),
        (scanned_leaves, per_layer_values),
        length=self.stack_axis_size,
        unroll=True,
    )
    for var, val in zip(shared, final_shared):
      var.value = val
    for var, val in zip(per_layer, stacked_per_layer):
      var.value = jax.tree_util.tree_map(
          lambda x: _restore_stack_axis(x, axis), val, is_leaf=_is_named
      )
    return result

  @classmethod
  def from_sublayer_builder(
      cls,
      builder: Callable[..., layer_base.Layer],
      stack_axis: AxisName,
      stack_axis_size: int,
      init_base_rng: jax.Array | None,
      builder_kwargs: dict[str, Any],
  ) -> LayerStack:
    """Builds a stack by running `builder` once per layer (vectorized).

    Args:
      builder: Called as `builder(init_base_rng=key, **builder_kwargs)`; must
        return a layer whose parameters/state hold only named arrays.
      stack_axis: Name of the new stack axis.
      stack_axis_size: Number of layers.
      init_base_rng: Base key (split into one key per layer), or None to build
        parameter slots.
      builder_kwargs: Extra keyword arguments for `builder`.

    Returns:
      A `LayerStack` whose named arrays all carry `stack_axis` first.
    """
    recorded: dict[str, Any] = {}

    def build_one(key: jax.Array | None) -> tuple[list[Any], list[Any]]:
      layer = builder(init_base_rng=key, **builder_kwargs)
      unbound, var_values = variables.unbind_variables(layer, freeze=True)
      for value in var_values:
        for leaf in jax.tree_util.tree_leaves(value, is_leaf=_is_named):
          if not _is_named(leaf):
            raise ValueError(
                "Variables returned by the LayerStack builder must only"
                " contain NamedArrays, not ordinary array data."
            )
      leaves, treedef = jax.tree_util.tree_flatten(
          (unbound, var_values), is_leaf=_is_named
      )
      recorded["treedef"] = treedef
      recorded["leaves"] = leaves
      named_out = [
          leaf.with_positional_prefix() for leaf in leaves if _is_named(leaf)
      ]
      # Plain array leaves leave the vmap unbatched (out_axes=None): vmap
      # itself then rejects any that depend on the key, while constants made
      # under an enclosing trace (jit / eval_shape) come out valid.
      arrays_out = [
          leaf for leaf in leaves
          if not _is_named(leaf) and isinstance(leaf, jax.Array)
      ]
      return named_out, arrays_out

    try:
      if init_base_rng is None:
        named, arrays = jax.vmap(
            lambda: build_one(None),
            axis_size=stack_axis_size,
            out_axes=(0, None),
        )()
      else:
        keys = jax.random.split(init_base_rng, stack_axis_size)
        named, arrays = jax.vmap(build_one, out_axes=(0, None))(keys)
    except ValueError as e:
      if "out_axes" not in str(e):
        raise
      raise ValueError(
          "LayerStack builder returned a non-NamedArray leaf that depends"
          " on the initialization key; only NamedArrays can vary per"
          f" layer. ({e})"
      ) from None

    named_iter = iter(named)
    arrays_iter = iter(arrays)
    leaves = []
    for leaf in recorded["leaves"]:
      if _is_named(leaf):
        leaves.append(_restore_stack_axis(next(named_iter), stack_axis))
      elif isinstance(leaf, jax.Array):
        leaves.append(next(arrays_iter))
      else:
        leaves.append(leaf)
    unbound, var_values = jax.tree_util.tree_unflatten(
        recorded["treedef"], leaves
    )

    new_vars: list[variables.AbstractVariable] = []
    for value in var_values:
      if isinstance(value, variables.ParameterValue):
        new_vars.append(
            variables.Parameter(
                label=value.label, value=value.value, metadata=value.metadata
            )
        )
      elif isinstance(value, variables.StateVariableValue):
        metadata = copy.deepcopy(value.metadata)
        axes = metadata.setdefault("layerstack_axes", {})
        if stack_axis in axes:
          raise ValueError(
              f"State variable {value.label!r} already has a layerstack_axes"
              f" entry for the stack axis {stack_axis!r}."
          )
        axes[stack_axis] = LayerStackVarBehavior.PER_LAYER
        new_vars.append(
            variables.StateVariable(
                value=value.value, label=value.label, metadata=metadata
            )
        )
      else:
        raise ValueError(
            "LayerStack builders may only create Parameters and"
            f" StateVariables, but found {type(value).__name__}."
        )
    return LayerStack(
        stacked_sublayers=variables.bind_variables(unbound, new_vars),
        stack_axis=stack_axis,
        stack_axis_size=stack_axis_size,
    )
