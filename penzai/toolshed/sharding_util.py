"""Name-based sharding of named arrays and models onto a device mesh.

Axes of named arrays are matched to mesh axes by name (identity by default,
or through an explicit `axis_name_to_mesh_name` mapping), so parameters and
activations can be sharded without writing a PartitionSpec per array.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable

import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from penzai import pz

PyTreeOfArrays = Any
PyTreeOfNamedArrays = Any
PyTreeOfShardings = Any
AxisName = Hashable


def _is_named(value: Any) -> bool:
  return isinstance(value, pz.nx.NamedArrayBase)


def _default_axis_map(mesh: Mesh) -> dict[AxisName, str | tuple[str, ...]]:
  return {name: name for name in mesh.axis_names}


def name_to_name_sharding(
    tree: PyTreeOfNamedArrays,
    mesh: Mesh,
    axis_name_to_mesh_name: (
        dict[AxisName, str | tuple[str, ...]] | None
    ) = None,
    ignore_unnamed_arrays: bool = False,
    as_shape_dtype_struct: bool = False,
) -> PyTreeOfShardings:
  """Builds shardings for a tree of named arrays by matching axis names.

  Each named axis is sharded over the mesh axis (or axes) it maps to;
  unmapped axes and positional axes are replicated.

  Args:
    tree: A pytree of named arrays (concrete or `jax.ShapeDtypeStruct`-backed).
    mesh: The device mesh.
    axis_name_to_mesh_name: Map from array axis names to mesh axis names
      (a tuple shards over several mesh axes). Defaults to the identity on the
      mesh's axis names.
    ignore_unnamed_arrays: Whether non-named leaves get a `None` sharding
      instead of raising an error.
    as_shape_dtype_struct: Whether to return `jax.ShapeDtypeStruct`s carrying
      the shardings instead of bare shardings.

  Returns:
    A tree of the same structure, each named array's `data_array` replaced by
    its `NamedSharding` (or a `ShapeDtypeStruct` holding it).

  Raises:
    ValueError: On a non-named leaf unless `ignore_unnamed_arrays` is set.
  """
  if axis_name_to_mesh_name is None:
    axis_name_to_mesh_name = _default_axis_map(mesh)
  mapping = axis_name_to_mesh_name

  def wrap_sharding(leaf: Any, spec: list[Any]) -> Any:
    sharding = NamedSharding(mesh, PartitionSpec(*spec))
    if as_shape_dtype_struct:
      new_data: Any = jax.ShapeDtypeStruct(
          shape=leaf.data_array.shape,
          dtype=leaf.data_array.dtype,
          sharding=sharding,
      )
    else:
      new_data = sharding
    return dataclasses.replace(leaf, data_array=new_data)

  def sharding_for(leaf: Any) -> Any:
    if isinstance(leaf, pz.nx.NamedArray):
      # Data layout is [positional axes..., named axes...]; positional axes
      # stay replicated.
      num_positional = len(leaf.data_array.shape) - len(leaf.named_axes)
      spec = [None] * num_positional + [
          mapping.get(name) for name in leaf.named_axes
      ]
      return wrap_sharding(leaf, spec)
    if isinstance(leaf, pz.nx.NamedArrayView):
      spec = [None] * len(leaf.data_shape)
      for name, data_axis in leaf.data_axis_for_name.items():
        if name in mapping:
          spec[data_axis] = mapping[name]
      return wrap_sharding(leaf, spec)
    if not ignore_unnamed_arrays:
      raise ValueError(
          "Cannot infer a name-based sharding for non-NamedArray leaf"
          f" {leaf}. If this leaf should be given a `None` sharding, set"
          " `ignore_unnamed_arrays=True`."
      )
    if as_shape_dtype_struct:
      return jax.ShapeDtypeStruct(
          shape=leaf.shape, dtype=leaf.dtype, sharding=None
      )
    return None

  return jax.tree_util.tree_map(sharding_for, tree, is_leaf=_is_named)


def name_to_name_device_put(
    tree: PyTreeOfNamedArrays,
    mesh: Mesh,
    axis_name_to_mesh_name: dict[str, str | tuple[str, ...]] | None = None,
) -> PyTreeOfNamedArrays:
  """Moves a tree of named arrays onto `mesh`, sharded by axis names.

  Raises:
    ValueError: If the tree has a leaf that is not a named array.
  """
  return jax.device_put(
      tree,
      name_to_name_sharding(
          tree, mesh, axis_name_to_mesh_name  # type: ignore[arg-type]
      ),
  )


def sharded_init(
    initializer: Callable[..., Any],
    *init_args: Any,
    mesh: Mesh,
    axis_name_to_mesh_name: dict[str, str | tuple[str, ...]] | None = None,
    **init_kwargs: Any,
) -> Any:
  """Runs a model initializer so parameters are created directly sharded.

  Variables must be created inside `initializer`; the returned model holds
  fresh mutable variables whose arrays are sharded by axis names.

  Usage: `model = sharded_init(build_fn, cfg, init_base_rng=key, mesh=mesh)`.

  Args:
    initializer: Builds the model (e.g. `MLP.from_config`).
    *init_args: Positional arguments for `initializer`.
    mesh: The device mesh.
    axis_name_to_mesh_name: Map from axis names to mesh axis names (identity
      on the mesh axis names by default).
    **init_kwargs: Keyword arguments for `initializer`.

  Returns:
    The initialized model with sharded variables.
  """

  def go() -> Any:
    return pz.unbind_variables(
        initializer(*init_args, **init_kwargs), freeze=True
    )

  shapes = jax.eval_shape(go)
  shardings = name_to_name_sharding(
      shapes,
      mesh,
      axis_name_to_mesh_name,  # type: ignore[arg-type]
      ignore_unnamed_arrays=True,
  )
  tree, values = jax.jit(go, out_shardings=shardings)()
  return pz.bind_variables(tree, values, unfreeze_as_copy=True)


@pz.pytree_dataclass
class ConstrainSharding(pz.nn.Layer):
  """Constrains the sharding of the value passing through it.

  Attributes:
    sharding: A sharding (or tree of shardings) for the value.
  """

  sharding: PyTreeOfShardings = dataclasses.field(
      metadata={"pytree_node": False}
  )

  def __call__(self, tree: Any, /, **_unused_side_inputs: Any) -> Any:
    """Returns `tree` with the sharding constraint applied."""
    return jax.lax.with_sharding_constraint(tree, self.sharding)


@pz.pytree_dataclass
class ConstrainShardingByName(pz.nn.Layer):
  """Constrains named arrays to be sharded by their axis names.

  Attributes:
    mesh: The device mesh.
    axis_name_to_mesh_name: Map from axis names to mesh axis names (identity
      on the mesh axis names by default).
  """

  mesh: Mesh = dataclasses.field(metadata={"pytree_node": False})
  axis_name_to_mesh_name: dict[str, str | tuple[str, ...]] | None = (
      dataclasses.field(default=None, metadata={"pytree_node": False})
  )

  def __call__(self, tree: Any, /, **_unused_side_inputs: Any) -> Any:
    """Returns `tree` constrained to its name-based sharding."""
    return jax.lax.with_sharding_constraint(
        tree,
        name_to_name_sharding(
            tree, self.mesh, self.axis_name_to_mesh_name  # type: ignore[arg-type]
        ),
    )
