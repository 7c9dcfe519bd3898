"""Benchmark: penzai tree operations vs. a bare `jax.tree_util.tree_map`.

Builds a model-like tree of ~320 Struct layers holding ~320 Parameters (32
blocks of small layers with tiny arrays), then times, side by side:

* `jax.tree_util.tree_map` over the same leaves (the baseline),
* `pz.select(tree).at_instances_of(T).apply(f)`,
* `pz.select(tree).at_instances_of(T).get_sequence()`,
* `pz.unbind_params(tree, freeze=True)`,
* `pz.bind_variables(...)` of the frozen values back into the slots.

Prints each time and its ratio to the baseline. Goal: every ratio <= 50.

Run: .venv/bin/python bench/core_tree_ops.py
"""

from __future__ import annotations

import dataclasses
import os
import timeit
from typing import Any, Callable

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from penzai import pz  # noqa: E402

N_BLOCKS = 32
LAYERS_PER_BLOCK = 9
GOAL_RATIO = 50.0


@pz.pytree_dataclass
class Affine(pz.Struct):
  """A tiny layer holding one weight Parameter and a static name."""

  weight: Any
  name: str = dataclasses.field(metadata={"pytree_node": False})


@pz.pytree_dataclass
class Activation(pz.Struct):
  """A parameter-free layer."""

  kind: str = dataclasses.field(metadata={"pytree_node": False})


@pz.pytree_dataclass
class Block(pz.Struct):
  """A block: a list of layers plus a block-level scale Parameter."""

  layers: list[Any]
  scale: Any


def build_tree() -> list[Block]:
  """Builds the benchmark tree (32 blocks, 288 Affine layers + 32 scales)."""
  blocks = []
  for b in range(N_BLOCKS):
    layers: list[Any] = []
    for i in range(LAYERS_PER_BLOCK):
      name = f"block{b}/layer{i}"
      layers.append(
          Affine(pz.Parameter(label=name, value=jnp.ones((2,))), name=name)
      )
    layers.insert(LAYERS_PER_BLOCK // 2, Activation(kind="relu"))
    scale = pz.Parameter(label=f"block{b}/scale", value=jnp.ones(()))
    blocks.append(Block(layers=layers, scale=scale))
  return blocks


def best_time(fn: Callable[[], Any], number: int, repeat: int = 5) -> float:
  """Best per-call time in seconds over `repeat` runs of `number` calls."""
  return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main() -> None:
  tree = build_tree()
  n_structs = len(tree) + sum(len(block.layers) for block in tree)
  n_params = len(pz.unbind_params(tree)[1])
  unbound, frozen = pz.unbind_params(tree, freeze=True)
  identity = lambda x: x

  cases: list[tuple[str, Callable[[], Any]]] = [
      ("jax.tree_util.tree_map (baseline)",
       lambda: jax.tree_util.tree_map(identity, tree)),
      ("select.at_instances_of(Affine).apply(f)",
       lambda: pz.select(tree).at_instances_of(Affine).apply(identity)),
      ("select.at_instances_of(Affine).get_sequence()",
       lambda: pz.select(tree).at_instances_of(Affine).get_sequence()),
      ("unbind_params(tree, freeze=True)",
       lambda: pz.unbind_params(tree, freeze=True)),
      ("bind_variables(unbound, frozen)",
       lambda: pz.bind_variables(unbound, frozen)),
  ]
  print(
      f"tree: {N_BLOCKS} blocks, {n_structs} Struct layers, {n_params}"
      " Parameters"
  )
  baseline = None
  worst = 0.0
  for name, fn in cases:
    fn()  # warm up caches
    seconds = best_time(fn, number=20)
    if baseline is None:
      baseline = seconds
    ratio = seconds / baseline
    if name != cases[0][0]:
      worst = max(worst, ratio)
    print(f"{name:50s} {seconds * 1e3:9.3f} ms   {ratio:7.1f}x")
  status = "OK" if worst <= GOAL_RATIO else "TOO SLOW"
  print(f"worst ratio {worst:.1f}x (goal <= {GOAL_RATIO:.0f}x): {status}")
  bench_variable_jit_dispatch(tree)


def bench_variable_jit_dispatch(tree: list[Block]) -> None:
  """Informational: per-call cost of `pz.variable_jit` vs. plain `jax.jit`.

  Both compile the same computation (a sum over all parameter values); the
  plain version takes the frozen values directly, so the difference is the
  Python-side unbind / freeze / update work of `variable_jit`.
  """

  def total_with_vars(model: list[Block]) -> jax.Array:
    return jnp.sum(jnp.stack([jnp.sum(p.value) for p in pz.unbind_params(model)[1]]))

  def total_plain(values: tuple[Any, ...]) -> jax.Array:
    return jnp.sum(jnp.stack([jnp.sum(v.value) for v in values]))

  _, frozen = pz.unbind_params(tree, freeze=True)
  with_vars = pz.variable_jit(total_with_vars)
  plain = jax.jit(total_plain)
  with_vars(tree).block_until_ready()
  plain(frozen).block_until_ready()
  t_vars = best_time(lambda: with_vars(tree).block_until_ready(), number=10)
  t_plain = best_time(lambda: plain(frozen).block_until_ready(), number=10)
  print(
      f"{'variable_jit call (vs jax.jit on frozen values)':50s}"
      f" {t_vars * 1e3:9.3f} ms   {t_vars / t_plain:7.1f}x (informational)"
  )


if __name__ == "__main__":
  main()
