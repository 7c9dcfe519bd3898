"""Linear and affine layers on named axes, their initializers, and einsum."""

from __future__ import annotations

import collections
import dataclasses
import functools
import typing
from typing import Any, Literal, Protocol, Sequence

import jax
import jax.numpy as jnp

from penzai.core import named_axes
from penzai.core import shapecheck
from penzai.core import struct
from penzai.core import variables
from penzai.nn import grouping
from penzai.nn import layer as layer_base
from penzai.nn import parameters

NamedArray = named_axes.NamedArray
Parameter = variables.Parameter
ParameterValue = variables.ParameterValue

_LINEAR_COLOR = "#eba875"
_LINEAR_GROUP_COLOR = (_LINEAR_COLOR, "color-mix(in oklab, #eba875 25%, white)")


# ---------------------------------------------------------------------------
# Initializers
# ---------------------------------------------------------------------------


class LinearOperatorWeightInitializer(Protocol):
  """Protocol for an initializer of a general linear-operator weight.

  Axis groups must be disjoint: "input" axes are contracted, "output" axes are
  produced, "parallel" axes are block-diagonal (e.g. heads), and
  "convolution_spatial" axes are kernel spatial axes.
  """

  def __call__(
      self,
      key: jax.Array,
      *,
      input_axes: dict[str, int],
      output_axes: dict[str, int],
      parallel_axes: dict[str, int],
      convolution_spatial_axes: dict[str, int],
      dtype: jax.typing.DTypeLike,
  ) -> NamedArray:
    """Returns a new weight with all the given axes."""
    ...


def check_unique_axis_names_for_initializer(
    input_axes: dict[str, int],
    output_axes: dict[str, int],
    parallel_axes: dict[str, int],
    convolution_spatial_axes: dict[str, int],
) -> None:
  """Checks that no axis name appears in more than one axis group.

  Raises:
    ValueError: If some name occurs more than once across the four dicts.
  """
  counts = collections.Counter(
      [
          *input_axes,
          *output_axes,
          *parallel_axes,
          *convolution_spatial_axes,
      ]
  )
  bad_names = {name for name, count in counts.items() if count > 1}
  if bad_names:
    raise ValueError(f"Duplicate axis names during initialization: {bad_names}.")


def variance_scaling_initializer(
    key: jax.Array,
    *,
    scale: float,
    mode: Literal["fan_in", "fan_out", "fan_avg"],
    distribution: Literal["uniform", "normal", "truncated_normal"],
    input_axes: dict[str, int],
    output_axes: dict[str, int],
    parallel_axes: dict[str, int],
    convolution_spatial_axes: dict[str, int],
    dtype: jax.typing.DTypeLike,
) -> NamedArray:
  """Generic variance-scaling initializer for a named weight.

  Fans are computed as in `jax.nn.initializers.variance_scaling`: input axes
  form the fan-in, output axes the fan-out, parallel axes are independent
  blocks, and convolution spatial axes form the receptive field.

  Returns:
    A NamedArray whose named axes are ordered parallel, spatial, input, output.
  """
  check_unique_axis_names_for_initializer(
      input_axes, output_axes, parallel_axes, convolution_spatial_axes
  )
  names: list[str] = []
  shape: list[int] = []
  input_positions: list[int] = []
  output_positions: list[int] = []
  parallel_positions: list[int] = []
  for group, positions in (
      (parallel_axes, parallel_positions),
      (convolution_spatial_axes, None),
      (input_axes, input_positions),
      (output_axes, output_positions),
  ):
    for name, size in group.items():
      if positions is not None:
        positions.append(len(shape))
      names.append(name)
      shape.append(size)
  init_fn = jax.nn.initializers.variance_scaling(
      scale=scale,
      mode=mode,
      distribution=distribution,
      in_axis=input_positions,
      out_axis=output_positions,
      batch_axis=parallel_positions,
  )
  # Two trailing singleton dims make every shape at least 2-D for JAX; they
  # contribute a factor of 1 to the receptive field.
  array = init_fn(key, tuple(shape) + (1, 1), dtype)[..., 0, 0]
  return named_axes.wrap(array).tag(*names)


xavier_uniform_initializer = functools.partial(
    variance_scaling_initializer,
    scale=1.0,
    mode="fan_avg",
    distribution="uniform",
)
xavier_normal_initializer = functools.partial(
    variance_scaling_initializer,
    scale=1.0,
    mode="fan_avg",
    distribution="normal",
)


def constant_initializer(value: float) -> LinearOperatorWeightInitializer:
  """Returns an initializer that fills the weight with `value` (key ignored).

  The result's named axes are ordered input, output, parallel, spatial.
  """

  def _constant_initializer(
      key: jax.Array,
      *,
      input_axes: dict[str, int],
      output_axes: dict[str, int],
      parallel_axes: dict[str, int],
      convolution_spatial_axes: dict[str, int],
      dtype: jax.typing.DTypeLike,
  ) -> NamedArray:
    del key
    check_unique_axis_names_for_initializer(
        input_axes, output_axes, parallel_axes, convolution_spatial_axes
    )
    named_shape: dict[named_axes.AxisName, int] = {}
    for group in (
        input_axes,
        output_axes,
        parallel_axes,
        convolution_spatial_axes,
    ):
      named_shape.update(group)
    return named_axes.full(named_shape, value, dtype=dtype)

  return _constant_initializer


zero_initializer = constant_initializer(0.0)


# ---------------------------------------------------------------------------
# Axis renaming and contraction
# ---------------------------------------------------------------------------


def _as_tuple(names: str | Sequence[Any]) -> tuple[Any, ...]:
  """Normalizes a single axis name or a sequence of names to a tuple."""
  return (names,) if isinstance(names, str) else tuple(names)


@struct.pytree_dataclass
class RenameAxes(layer_base.Layer):
  """Renames named axes of its input (`old[i]` becomes `new[i]`).

  Attributes:
    old: Current axis name(s).
    new: New axis name(s), matched to `old` by position.
  """

  old: str | tuple[str, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  new: str | tuple[str, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )

  def __call__(
      self, value: named_axes.NamedArrayBase, /, **_unused_side_inputs: Any
  ) -> named_axes.NamedArrayBase:
    """Returns `value` with the axes renamed."""
    old = _as_tuple(self.old)
    new = _as_tuple(self.new)
    with jax.named_scope(type(self).__name__):
      if isinstance(value, named_axes.NamedArrayBase):
        missing = [name for name in old if name not in value.named_shape]
        if missing:
          raise ValueError(
              f"RenameAxes(old={self.old!r}, new={self.new!r}): axes"
              f" {missing} are not in the input's named shape"
              f" {dict(value.named_shape)}."
          )
      return value.untag(*old).tag(*new)


def contract(
    names: str | Sequence[named_axes.AxisName],
    left: named_axes.NamedArrayBase,
    right: named_axes.NamedArrayBase,
) -> named_axes.NamedArrayBase:
  """Contracts two named arrays over the given axis names.

  Axes present in both arrays but not contracted are matched elementwise;
  every other axis is kept.
  """
  names = _as_tuple(names)
  return named_axes.nmap(jnp.tensordot)(
      left.untag(*names), right.untag(*names), axes=len(names)
  )


def _axis_to_index(spec: tuple[str, ...] | dict[str, str]) -> dict[str, str]:
  """An einsum spec as a mapping from axis name to index name."""
  if isinstance(spec, dict):
    return dict(spec)
  return {name: name for name in spec}


@struct.pytree_dataclass
class NamedEinsum(layer_base.Layer):
  """An einsum over named arrays, matched by index names.

  Each spec maps axis names to index names (a tuple of names means each name
  is its own index). Axes sharing an index are contracted or aligned; all
  inputs must share the same extra ("batch") axes, which are vectorized.

  Attributes:
    input_axes: One spec per input array.
    output_axes: Spec of the output; its keys name the output axes.
  """

  input_axes: tuple[tuple[str, ...] | dict[str, str], ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  output_axes: tuple[str, ...] | dict[str, str] = dataclasses.field(
      metadata={"pytree_node": False}
  )

  def _input_structure(self) -> tuple[shapecheck.ArraySpec, ...]:
    """The expected structure of the input tuple."""
    return tuple(
        shapecheck.ArraySpec(
            named_shape={
                **shapecheck.var("B"),
                **{
                    axis: shapecheck.var("I")[index]
                    for axis, index in _axis_to_index(spec).items()
                },
            },
            dtype=jnp.floating,
        )
        for spec in self.input_axes
    )

  def _output_structure(self) -> shapecheck.ArraySpec:
    """The expected structure of the output."""
    return shapecheck.ArraySpec(
        named_shape={
            **shapecheck.var("B"),
            **{
                axis: shapecheck.var("I")[index]
                for axis, index in _axis_to_index(self.output_axes).items()
            },
        },
        dtype=jnp.floating,
    )

  def __call__(
      self,
      arrays: tuple[named_axes.NamedArrayBase, ...],
      /,
      **_unused_side_inputs: Any,
  ) -> named_axes.NamedArrayBase:
    """Computes the einsum of `arrays`; output axes follow the batch axes.

    Raises:
      pz.chk.StructureMismatchError: On missing axes, inconsistent sizes,
        differing batch axes or non-floating inputs.
    """
    with jax.named_scope(type(self).__name__):
      dimvars = shapecheck.check_structure(
          tuple(arrays), self._input_structure()
      )
      index_ids: dict[str, int] = {}

      def ids(index_names: Sequence[str]) -> list[int]:
        return [index_ids.setdefault(n, len(index_ids)) for n in index_names]

      operands: list[Any] = []
      for array, spec in zip(arrays, self.input_axes):
        axis_to_index = _axis_to_index(spec)
        axes_in_order = [n for n in array.named_shape if n in axis_to_index]
        operands.append(array.untag(*axes_in_order))
        operands.append(ids([axis_to_index[n] for n in axes_in_order]))
      out_axis_to_index = _axis_to_index(self.output_axes)
      operands.append(ids(list(out_axis_to_index.values())))
      result = named_axes.nmap(jnp.einsum)(*operands).tag(
          *out_axis_to_index.keys()
      )
      shapecheck.check_structure(
          result, self._output_structure(), known_vars=dimvars
      )
      return result


# ---------------------------------------------------------------------------
# Linear, bias, affine
# ---------------------------------------------------------------------------


def _label_error_prefix(param: Any, suffix: str) -> str:
  """`"(<layer name>) "` if `param` is a labeled parameter ending in `suffix`."""
  if isinstance(param, (Parameter, ParameterValue)):
    label = param.label
    if isinstance(label, str) and label.endswith(suffix):
      return f"({label[: -len(suffix)]}) "
  return ""


@struct.pytree_dataclass
class Linear(layer_base.Layer):
  """A generalized linear (not affine) operator on named arrays.

  Weight axes are input axes (contracted away), output axes (added to the
  result; must not be in the input) or parallel axes (the rest; present in
  both input and output and matched elementwise).

  Attributes:
    weights: The weight parameter.
    in_axis_names: Names of the input (contracted) axes.
    out_axis_names: Names of the output axes.
  """

  weights: parameters.ParameterLike[NamedArray]
  in_axis_names: tuple[str, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  out_axis_names: tuple[str, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )

  def __call__(
      self, in_array: named_axes.NamedArrayBase, /, **_unused_side_inputs: Any
  ) -> named_axes.NamedArrayBase:
    """Applies the linear operator.

    Raises:
      pz.chk.StructureMismatchError: If the input lacks an input/parallel axis,
        has a wrong size, positional axes, an output axis, or is not floating.
      pz.UnboundVariableError: If the weights are an unbound slot.
    """
    with jax.named_scope(type(self).__name__):
      weights = self.weights.value
      prefix = _label_error_prefix(self.weights, ".weights")
      weight_shape = weights.named_shape
      dimvars = shapecheck.check_structure(
          in_array,
          shapecheck.ArraySpec(
              named_shape={
                  **shapecheck.var("B"),
                  **{
                      name: size
                      for name, size in weight_shape.items()
                      if name not in self.out_axis_names
                  },
              },
              dtype=jnp.floating,
          ),
          error_prefix=prefix,
      )
      conflicts = [
          name for name in self.out_axis_names if name in in_array.named_shape
      ]
      if conflicts:
        raise shapecheck.StructureMismatchError(
            f"{prefix}Linear input already has output axis names {conflicts}"
            f" (input named shape {dict(in_array.named_shape)}; output axes"
            f" {self.out_axis_names}). Rename the input axes first, or build"
            " the layer with `Linear.from_config`, which renames overlapping"
            " output axes automatically."
        )
      result = contract(self.in_axis_names, in_array, weights)
      shapecheck.check_structure(
          result,
          shapecheck.ArraySpec(
              named_shape={
                  **shapecheck.var("B"),
                  **{
                      name: size
                      for name, size in weight_shape.items()
                      if name not in self.in_axis_names
                  },
              },
              dtype=jnp.floating,
          ),
          known_vars=dimvars,
          error_prefix=prefix,
      )
      return result

  @classmethod
  def from_config(
      cls,
      name: str,
      init_base_rng: jax.Array | None,
      input_axes: dict[str, int],
      output_axes: dict[str, int],
      parallel_axes: dict[str, int] | None = None,
      parallel_broadcast_axes: dict[str, int] | None = None,
      initializer: LinearOperatorWeightInitializer = xavier_uniform_initializer,
      dtype: jax.typing.DTypeLike = jnp.float32,
      rename_outputs_if_necessary: bool = True,
  ) -> Linear | LinearInPlace:
    """Builds a linear layer with a new weight labeled `f"{name}.weights"`.

    Args:
      name: Layer name; the weight label is `f"{name}.weights"`.
      init_base_rng: Base PRNG key, or None to leave a `pz.ParameterSlot`.
      input_axes: Axes contracted away, with sizes.
      output_axes: Axes produced, with sizes.
      parallel_axes: Axes present in input and output, matched elementwise.
      parallel_broadcast_axes: Axes initialized like parallel axes but added
        to the output (not present in the input).
      initializer: Weight initializer.
      dtype: Weight dtype.
      rename_outputs_if_necessary: If an output name is also an input name,
        produce it as `name + "_out"` and rename it back afterwards (the result
        is then a `LinearInPlace`).

    Returns:
      A `Linear`, or a `LinearInPlace` wrapping one and a `RenameAxes`.

    Raises:
      ValueError: On overlapping axis groups that cannot be resolved.
    """
    parallel_axes = {} if parallel_axes is None else parallel_axes
    parallel_broadcast_axes = (
        {} if parallel_broadcast_axes is None else parallel_broadcast_axes
    )
    overlapping = [n for n in output_axes if n in input_axes]
    if overlapping:
      if not rename_outputs_if_necessary:
        raise ValueError(
            "input_axes and output_axes must not overlap if"
            " rename_outputs_if_necessary is not set; got"
            f" input_axes={input_axes}, output_axes={output_axes}"
        )
      renamed: dict[str, int] = {}
      primed: list[str] = []
      for out_name, size in output_axes.items():
        if out_name in input_axes:
          new_name = out_name + "_out"
          if new_name in input_axes:
            raise ValueError(
                f"Tried to rename {out_name} to {new_name} to avoid a"
                " conflict, but both names are already in input_axes."
                " Please rename the axes manually (e.g. with"
                " `pz.nn.RenameAxes`) or pass distinct output axis names."
            )
          if new_name in output_axes:
            raise ValueError(
                f"Tried to rename {out_name} to {new_name} to avoid a"
                " conflict with input_axes, but output_axes already contains"
                f" {new_name}; got input_axes={input_axes},"
                f" output_axes={output_axes}. Please pass distinct axis names."
            )
          primed.append(new_name)
          renamed[new_name] = size
        else:
          renamed[out_name] = size
      return LinearInPlace(
          sublayers=[
              cls.from_config(
                  name=name,
                  init_base_rng=init_base_rng,
                  input_axes=input_axes,
                  output_axes=renamed,
                  parallel_axes=parallel_axes,
                  parallel_broadcast_axes=parallel_broadcast_axes,
                  initializer=initializer,
                  dtype=dtype,
                  rename_outputs_if_necessary=False,
              ),
              RenameAxes(old=tuple(primed), new=tuple(overlapping)),
          ],
      )
    in_or_out = set(input_axes) | set(output_axes)
    if set(parallel_axes) & in_or_out or set(parallel_broadcast_axes) & (
        in_or_out | set(parallel_axes)
    ):
      raise ValueError(
          "parallel_axes and parallel_broadcast_axes must not overlap with"
          " each other or with input/output axes; got"
          f" input_axes={input_axes}, output_axes={output_axes},"
          f" parallel_axes={parallel_axes},"
          f" parallel_broadcast_axes={parallel_broadcast_axes}"
      )
    return cls(
        weights=parameters.make_parameter(
            f"{name}.weights",
            init_base_rng,
            initializer,
            input_axes=input_axes,
            output_axes=output_axes,
            parallel_axes={**parallel_axes, **parallel_broadcast_axes},
            convolution_spatial_axes={},
            dtype=dtype,
        ),
        in_axis_names=tuple(input_axes),
        out_axis_names=tuple(output_axes) + tuple(parallel_broadcast_axes),
    )

  @property
  def input_axes(self) -> dict[str, int]:
    """The input (contracted) axes of the weight, with sizes."""
    return {
        name: size
        for name, size in self.weights.value.named_shape.items()
        if name in self.in_axis_names
    }

  @property
  def output_axes(self) -> dict[str, int]:
    """The output axes of the weight, with sizes."""
    return {
        name: size
        for name, size in self.weights.value.named_shape.items()
        if name in self.out_axis_names
    }

  @property
  def parallel_axes(self) -> dict[str, int]:
    """The parallel axes of the weight (neither input nor output), with sizes."""
    return {
        typing.cast(str, name): size
        for name, size in self.weights.value.named_shape.items()
        if name not in self.in_axis_names and name not in self.out_axis_names
    }

  def treescope_color(self) -> str | tuple[str, str]:
    return _LINEAR_COLOR


@struct.pytree_dataclass
class LinearInPlace(grouping.Sequential):
  """A linear operator whose output axes reuse input axis names.

  Holds `[Linear(...), RenameAxes(old=<primed names>, new=<original names>)]`.
  """

  sublayers: list[layer_base.Layer]

  def treescope_color(self) -> str | tuple[str, str]:
    return _LINEAR_GROUP_COLOR


@struct.pytree_dataclass
class AddBias(layer_base.Layer):
  """Adds a learnable bias (named broadcasting adds any new bias axes).

  Attributes:
    bias: The bias parameter.
    new_axis_names: Bias axes that are expected to be new to the input.
  """

  bias: parameters.ParameterLike[NamedArray]
  new_axis_names: tuple[str, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )

  def __call__(
      self, value: named_axes.NamedArrayBase, /, **_unused_side_inputs: Any
  ) -> named_axes.NamedArrayBase:
    """Returns `value + bias`.

    Raises:
      ValueError: If an input axis shared with the bias has a different size.
    """
    with jax.named_scope(type(self).__name__):
      bias = self.bias.value
      if isinstance(value, named_axes.NamedArrayBase):
        value_shape = value.named_shape
        mismatched = {
            name: (value_shape[name], size)
            for name, size in bias.named_shape.items()
            if name in value_shape and value_shape[name] != size
        }
        if mismatched:
          prefix = _label_error_prefix(self.bias, ".bias") or "AddBias: "
          raise ValueError(
              f"{prefix}input axis sizes do not match the bias:"
              + "".join(
                  f" axis {name!r} has size {got} in the input but {want} in"
                  " the bias;"
                  for name, (got, want) in mismatched.items()
              )
              + f" input named shape {dict(value_shape)}, bias named shape"
              f" {dict(bias.named_shape)}."
          )
      return value + bias

  @classmethod
  def from_config(
      cls,
      name: str,
      init_base_rng: jax.Array | None,
      biased_axes: dict[str, int],
      new_output_axes: dict[str, int] | None = None,
      initializer: LinearOperatorWeightInitializer = zero_initializer,
      dtype: jax.typing.DTypeLike = jnp.float32,
  ) -> AddBias:
    """Builds a bias labeled `f"{name}.bias"` over the given axes.

    Args:
      name: Layer name; the bias label is `f"{name}.bias"`.
      init_base_rng: Base PRNG key, or None to leave a `pz.ParameterSlot`.
      biased_axes: Input axes the bias varies over.
      new_output_axes: Extra axes the bias adds to the input.
      initializer: Bias initializer (zeros by default).
      dtype: Bias dtype.
    """
    new_output_axes = {} if new_output_axes is None else new_output_axes
    return cls(
        bias=parameters.make_parameter(
            f"{name}.bias",
            init_base_rng,
            initializer,
            input_axes={},
            output_axes={**biased_axes, **new_output_axes},
            parallel_axes={},
            convolution_spatial_axes={},
            dtype=dtype,
        ),
        new_axis_names=tuple(new_output_axes),
    )

  def treescope_color(self) -> str | tuple[str, str]:
    return "#65cfbc"


@struct.pytree_dataclass
class Affine(grouping.Sequential):
  """An affine layer: a `Linear` followed by an `AddBias`."""

  sublayers: list[layer_base.Layer]

  @classmethod
  def from_config(
      cls,
      name: str,
      init_base_rng: jax.Array | None,
      input_axes: dict[str, int],
      output_axes: dict[str, int],
      parallel_axes: dict[str, int] | None = None,
      parallel_broadcast_axes: dict[str, int] | None = None,
      linear_initializer: LinearOperatorWeightInitializer = (
          xavier_uniform_initializer
      ),
      bias_initializer: LinearOperatorWeightInitializer = zero_initializer,
      dtype: jax.typing.DTypeLike = jnp.float32,
      rename_outputs_if_necessary: bool = True,
  ) -> Affine:
    """Builds `Affine([Linear, AddBias])` (or `[Linear, RenameAxes, AddBias]`).

    Labels are `f"{name}/Linear.weights"` and `f"{name}/AddBias.bias"`; the
    bias covers the output, parallel and parallel-broadcast axes. Arguments
    are as for `Linear.from_config`.
    """
    parallel_axes = {} if parallel_axes is None else parallel_axes
    parallel_broadcast_axes = (
        {} if parallel_broadcast_axes is None else parallel_broadcast_axes
    )
    linear = Linear.from_config(
        name=f"{name}/Linear",
        init_base_rng=init_base_rng,
        input_axes=input_axes,
        output_axes=output_axes,
        parallel_axes=parallel_axes,
        parallel_broadcast_axes=parallel_broadcast_axes,
        initializer=linear_initializer,
        dtype=dtype,
        rename_outputs_if_necessary=rename_outputs_if_necessary,
    )
    add_bias = AddBias.from_config(
        name=f"{name}/AddBias",
        init_base_rng=init_base_rng,
        biased_axes={
            **parallel_axes,
            **parallel_broadcast_axes,
            **output_axes,
        },
        initializer=bias_initializer,
        dtype=dtype,
    )
    if isinstance(linear, LinearInPlace):
      return cls(sublayers=[*linear.sublayers, add_bias])
    return cls(sublayers=[linear, add_bias])

  def treescope_color(self) -> str | tuple[str, str]:
    return _LINEAR_GROUP_COLOR


@struct.pytree_dataclass
class ConstantRescale(layer_base.Layer):
  """Multiplies every array leaf of the input by a constant.

  Attributes:
    by: The scale factor (a float or a scalar array; a pytree child).
  """

  by: float | jax.Array

  def __call__(self, value: Any, /, **_unused_side_inputs: Any) -> Any:
    """Returns `value` with every leaf multiplied by `by`."""
    with jax.named_scope(type(self).__name__):
      return jax.tree_util.tree_map(lambda x: x * self.by, value)

