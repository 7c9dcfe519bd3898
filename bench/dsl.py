"""Benchmarks of penzai.dsl (not tests): loading/checking speed and build overhead.

Run: `.venv/bin/python bench/dsl.py`. Targets:
- load + static check of a 1,000-node spec: < 0.5 s;
- `dsl.build(spec, init_base_rng=None)`: <= 1.2x calling the same `from_config`
  functions by hand.
"""

from __future__ import annotations

import time
from typing import Any, Callable

BLOCKS = 333  # root Sequential + 333 x (Residual, LayerNorm, Linear) = 1,000 nodes
WIDTH = 8


def spec_text(blocks: int = BLOCKS) -> str:
  """YAML of a deep residual network with `3 * blocks + 1` nodes."""
  lines = [
      "name: deep",
      "params: {width: %d}" % WIDTH,
      "input: {named_shape: {batch: B, features: ${width}}}",
      "model:",
      "  type: Sequential",
      "  layers:",
  ]
  for i in range(blocks):
    lines += [
        f"    - type: Residual",
        f"      name: block_{i}",
        f"      layers:",
        f"        - {{type: LayerNorm, name: norm, across_axes: {{features: ${{width}}}}}}",
        f"        - {{type: Linear, name: mix, input_axes: {{features: ${{width}}}}, output_axes: {{features: ${{width}}}}}}",
    ]
  return "\n".join(lines) + "\n"


def by_hand(blocks: int = BLOCKS) -> Any:
  """The same model built by calling the same `from_config` functions directly (same arguments)."""
  import jax.numpy as jnp

  from penzai import pz

  f32 = jnp.dtype("float32")
  init = pz.nn.xavier_uniform_initializer
  layers: list[Any] = []
  for i in range(blocks):
    layers.append(pz.nn.Residual(pz.nn.Sequential([
        pz.nn.LayerNorm.from_config(name=f"deep/block_{i}/norm", init_base_rng=None,
                                    across_axes={"features": WIDTH}, epsilon=1e-6, dtype=f32),
        pz.nn.Linear.from_config(name=f"deep/block_{i}/mix", init_base_rng=None,
                                 input_axes={"features": WIDTH}, output_axes={"features": WIDTH},
                                 parallel_axes=None, parallel_broadcast_axes=None, initializer=init,
                                 dtype=f32, rename_outputs_if_necessary=True),
    ])))
  return pz.nn.Sequential(layers)


def best(fn: Callable[[], Any], repeats: int = 7) -> float:
  """Best CPU time of `repeats` calls (CPU time is less disturbed by other processes)."""
  times = []
  for _ in range(repeats):
    start = time.process_time()
    fn()
    times.append(time.process_time() - start)
  return min(times)


def main() -> None:
  import jax

  from penzai import dsl

  text = spec_text()
  spec = dsl.loads(text, "deep.yaml")
  n_nodes = sum(1 for _ in __import__("penzai.dsl.semantics", fromlist=["walk"]).walk(spec))
  t_load_check = best(lambda: dsl.check(dsl.loads(text, "deep.yaml")), repeats=5)
  dsl.check(spec)
  dsl.build(spec)  # warm-up; the static check result is cached per spec object
  # Interleave the two so that machine load affects both alike; keep the best of each.
  import gc

  gc.disable()  # collections would land on one side or the other at random
  t_dsl, t_hand = float("inf"), float("inf")
  for _ in range(30):
    t_dsl = min(t_dsl, best(lambda: dsl.build(spec), repeats=1))
    t_hand = min(t_hand, best(by_hand, repeats=1))
  gc.enable()
  same = jax.tree_util.tree_structure(dsl.build(spec)) == jax.tree_util.tree_structure(by_hand())  # type: ignore[operator]
  assert same, "the DSL and the hand-written build differ"
  print(f"nodes: {n_nodes}")
  print(f"load + static check: {t_load_check * 1e3:.1f} ms (target < 500 ms)")
  print(f"build (init_base_rng=None): dsl {t_dsl * 1e3:.1f} ms, by hand {t_hand * 1e3:.1f} ms,"
        f" ratio {t_dsl / t_hand:.2f} (target <= 1.2)")


if __name__ == "__main__":
  main()
