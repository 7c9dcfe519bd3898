"""Layers that rewire a model's computation for interpretability experiments.

- `KnockOutAttentionHeads` redirects chosen attention heads to the first
  (BOS) token.
- `RewireComputationPaths` mixes parallel "worlds" (e.g. clean and corrupted
  runs stacked along a named axis) with a fixed connection matrix.
- `LinearizeAndAdjust` replaces a layer by its first-order Taylor expansion
  around a chosen point.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from penzai import pz


@pz.pytree_dataclass
class KnockOutAttentionHeads(pz.nn.Layer):
  """Redirects attention heads to attend only to position 0 (BOS).

  Insert it right after the attention `Softmax`. A mask value of 1 keeps a
  head's attention weights, 0 makes it attend only to the first key
  position, and fractions interpolate. Mask axes broadcast by name.

  Attributes:
    head_mask: Named array of mask values (e.g. with a "heads" axis).
  """

  head_mask: pz.nx.NamedArray

  def __call__(
      self, attn_weights: pz.nx.NamedArray, /, **_unused_side_inputs: Any
  ) -> pz.nx.NamedArray:
    """Interpolates between the weights and a one-hot on key position 0."""
    kv_len = attn_weights.named_shape["kv_seq"]
    onehot = pz.nx.wrap(
        jnp.zeros((kv_len,), dtype=attn_weights.dtype).at[0].set(1)
    ).tag("kv_seq")
    return onehot + self.head_mask * (attn_weights - onehot)


@dataclasses.dataclass(frozen=True)
class From:
  """One incoming connection of a `RewireComputationPaths` world.

  Attributes:
    source: Name of the source world.
    weight: Connection weight; a NamedArray weight (empty positional shape)
      makes the connection vary along its named axes.
  """

  source: str
  weight: float | pz.nx.NamedArray = 1.0


@pz.pytree_dataclass
class RewireComputationPaths(pz.nn.Layer):
  """Recombines parallel worlds stacked along a named axis.

  Each output world is the weighted sum of the source worlds listed for it
  in `taking` (an empty tuple gives zeros).

  Attributes:
    worlds_axis: Name of the axis indexing the worlds.
    world_ordering: Names of the worlds, in axis order.
    taking: For each destination world, its incoming connection(s).
  """

  worlds_axis: str = dataclasses.field(metadata={"pytree_node": False})
  world_ordering: tuple[str, ...] = dataclasses.field(
      metadata={"pytree_node": False}
  )
  taking: dict[str, From | tuple[From, ...]] = dataclasses.field(
      metadata={"pytree_node": False}
  )

  def path_matrix(self) -> pz.nx.NamedArray:
    """Returns the (destination, source) connection matrix as a named array."""
    assert len(self.taking) == len(self.world_ordering), (
        f"RewireComputationPaths: taking has {len(self.taking)} entries but"
        f" world_ordering has {len(self.world_ordering)} worlds."
    )
    assert set(self.taking.keys()) == set(self.world_ordering), (
        "RewireComputationPaths: the keys of taking"
        f" {sorted(self.taking.keys())} must equal the worlds"
        f" {sorted(self.world_ordering)}."
    )
    index = {world: i for i, world in enumerate(self.world_ordering)}
    n = len(self.world_ordering)
    matrix: list[list[Any]] = [[0 for _ in range(n)] for _ in range(n)]
    for dest, connections in self.taking.items():
      if isinstance(connections, From):
        connections = (connections,)
      for connection in connections:
        row = index[dest]
        col = index[connection.source]
        matrix[row][col] = matrix[row][col] + connection.weight
    return pz.nx.nmap(jnp.array)(matrix)

  def __call__(
      self, inputs: pz.nx.NamedArray, /, **_unused_side_inputs: Any
  ) -> pz.nx.NamedArray:
    """Returns each destination world as a weighted sum of source worlds."""
    mat = self.path_matrix().astype(inputs.dtype)
    return pz.nx.nmap(jnp.dot)(mat, inputs.untag(self.worlds_axis)).tag(
        self.worlds_axis
    )


def _is_named(value: Any) -> bool:
  return isinstance(value, pz.nx.NamedArrayBase)


@pz.pytree_dataclass
class LinearizeAndAdjust(pz.nn.Layer):
  """First-order Taylor approximation of `target`.

  Computes `target(p) + J_target(p) @ (e - p)` where
  `p = linearize_around(x)` and `e = evaluate_at(x)`. Named axes present in
  only one of the two points are broadcast, so the result carries the union.

  Attributes:
    linearize_around: Computes the linearization point from the input.
    evaluate_at: Computes the evaluation point from the input (usually
      `pz.nn.Identity()`).
    target: The layer to linearize.
  """

  linearize_around: pz.nn.Layer
  evaluate_at: pz.nn.Layer
  target: pz.nn.Layer

  def __call__(self, inputs: Any, /, **side_inputs: Any) -> Any:
    """Evaluates the linearization of `target` at `evaluate_at(inputs)`."""
    primal_tree = self.linearize_around(inputs, **side_inputs)
    eval_tree = self.evaluate_at(inputs, **side_inputs)
    primal_leaves, primal_def = jax.tree_util.tree_flatten(
        primal_tree, is_leaf=_is_named
    )
    eval_leaves, eval_def = jax.tree_util.tree_flatten(
        eval_tree, is_leaf=_is_named
    )
    assert primal_def == eval_def, (  # type: ignore[operator]
        "LinearizeAndAdjust: linearize_around and evaluate_at returned"
        f" different structures: {primal_def} vs {eval_def}"
    )
    primals = []
    tangents = []
    for primal, at in zip(primal_leaves, eval_leaves):
      if not _is_named(primal):
        primal = pz.nx.wrap(primal)
      if not _is_named(at):
        at = pz.nx.wrap(at)
      dtype = jnp.result_type(primal.dtype, at.dtype)
      tangent = at - primal
      primal = primal.broadcast_like(at).astype(dtype)
      tangent = tangent.order_like(primal).astype(dtype)
      primals.append(primal)
      tangents.append(tangent)
    frozen_target = pz.freeze_variables(self.target)
    frozen_side_inputs = pz.freeze_variables(side_inputs)

    def target_fn(x: Any) -> Any:
      return frozen_target(x, **frozen_side_inputs)

    primal_out, tangent_out = jax.jvp(
        target_fn,
        (jax.tree_util.tree_unflatten(primal_def, primals),),
        (jax.tree_util.tree_unflatten(primal_def, tangents),),
    )
    return jax.tree_util.tree_map(
        lambda p, t: p + t, primal_out, tangent_out, is_leaf=_is_named
    )
