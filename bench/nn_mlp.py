"""Benchmark: penzai MLP vs the same computation hand-written in jax.numpy.

Prints, for each scenario, the median time of both versions (measured side
by side, interleaved, in one run, with the same weights) and their ratio:

* jitted MLP forward               (goal <= 1.05x)
* eager MLP call                   (goal within 10x)
* first call: trace + compile      (goal <= 1.2x)
* jitted StatefulTrainer step vs a hand-written optax step (goal <= 1.2x)

Run:  .venv/bin/python bench/nn_mlp.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from penzai import pz
from penzai.models import simple_mlp
from penzai.toolshed import basic_training


def _block(x: Any) -> Any:
  return jax.block_until_ready(x)


def _interleaved(
    fns: dict[str, Callable[[], Any]], rounds: int, calls: int
) -> dict[str, list[float]]:
  """Seconds per call of each fn, one sample per interleaved round."""
  samples: dict[str, list[float]] = {name: [] for name in fns}
  for name, fn in fns.items():  # warm-up
    _block(fn())
  for r in range(rounds):
    order = list(fns.items())
    if r % 2:
      order.reverse()
    for name, fn in order:
      start = time.perf_counter()
      for _ in range(calls):
        out = fn()
      _block(out)
      samples[name].append((time.perf_counter() - start) / calls)
  return samples


def _report(
    title: str, pz_samples: list[float], jnp_samples: list[float], goal: str
) -> None:
  """Prints medians and the ratios of medians and of minimums.

  The minimum is the least noisy estimate on a shared machine; the median
  shows typical behaviour.
  """
  pz_med, jnp_med = statistics.median(pz_samples), statistics.median(jnp_samples)
  ratio_min = min(pz_samples) / min(jnp_samples)
  print(
      f"{title:<34} penzai {pz_med * 1e3:9.3f} ms   jax.numpy"
      f" {jnp_med * 1e3:9.3f} ms   ratio median {pz_med / jnp_med:6.3f}x"
      f"  min {ratio_min:6.3f}x  (goal {goal})"
  )


def _weights(mlp: simple_mlp.MLP) -> list[tuple[jax.Array, jax.Array]]:
  """(W, b) arrays of each Affine, in the hand-written layout."""
  out = []
  for layer in mlp.sublayers:
    if isinstance(layer, pz.nn.Affine):
      linear, bias = layer.sublayers[0], layer.sublayers[-1]
      assert isinstance(linear, pz.nn.Linear)
      assert isinstance(bias, pz.nn.AddBias)
      w = linear.weights.value.unwrap("features", "features_out")
      b = bias.bias.value.unwrap("features")
      out.append((w, b))
  return out


def hand_mlp(weights: list[tuple[jax.Array, jax.Array]], x: jax.Array) -> jax.Array:
  """The MLP written directly in jax.numpy."""
  for i, (w, b) in enumerate(weights):
    if i:
      x = jax.nn.relu(x)
    x = x @ w + b
  return x


def main() -> None:
  """Runs all scenarios and prints the ratios."""
  parser = argparse.ArgumentParser(description="penzai MLP benchmark")
  parser.add_argument("--quick", action="store_true", help="fewer repetitions")
  args = parser.parse_args()
  rounds = 7 if args.quick else 21

  sizes = [256, 512, 512, 256]
  batch = 256
  mlp = simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(0), feature_sizes=sizes
  )
  weights = _weights(mlp)
  x_raw = jax.random.normal(jax.random.key(1), (batch, sizes[0]))
  x = pz.nx.wrap(x_raw, "batch", "features")
  frozen = pz.freeze_params(mlp)
  unbound, params = pz.unbind_params(mlp, freeze=True)
  print(f"MLP {sizes}, batch {batch}, backend {jax.default_backend()}")

  # Same numbers?
  diff = jnp.max(jnp.abs(mlp(x).unwrap("batch", "features") - hand_mlp(weights, x_raw)))
  print(f"max |penzai - jax.numpy| = {float(diff):.2e}")

  # 1. Jitted forward.
  pz_fwd = jax.jit(lambda model, v: model(v).unwrap("batch", "features"))
  pz_fwd_params = jax.jit(
      lambda ps, v: unbound.bind_variables(ps)(v).unwrap("batch", "features")
  )
  jnp_fwd = jax.jit(hand_mlp)
  t = _interleaved(
      {
          "pz": lambda: pz_fwd(frozen, x),
          "pz_params": lambda: pz_fwd_params(params, x),
          "jnp": lambda: jnp_fwd(weights, x_raw),
      },
      rounds=3 * rounds,
      calls=5,
  )
  _report("jitted forward (model as arg)", t["pz"], t["jnp"], "<= 1.05x")
  _report("jitted forward (params as arg)", t["pz_params"], t["jnp"], "<= 1.05x")
  tiny = simple_mlp.MLP.from_config(
      name="tiny", init_base_rng=jax.random.key(0), feature_sizes=[8, 16, 16, 8]
  )
  tiny_frozen, tiny_weights = pz.freeze_params(tiny), _weights(tiny)
  xt_raw = jax.random.normal(jax.random.key(1), (4, 8))
  xt = pz.nx.wrap(xt_raw, "batch", "features")
  t = _interleaved(
      {
          "pz": lambda: pz_fwd(tiny_frozen, xt),
          "jnp": lambda: jnp_fwd(tiny_weights, xt_raw),
      },
      rounds=rounds,
      calls=100,
  )
  _report("jitted forward (tiny, dispatch)", t["pz"], t["jnp"], "<= 1.05x")
  # The mutable model through pz.variable_jit (unbind, freeze, write back).
  pz_vfwd = pz.variable_jit(lambda model, v: model(v).unwrap("batch", "features"))
  t = _interleaved(
      {
          "pz": lambda: pz_vfwd(tiny, xt),
          "jnp": lambda: jnp_fwd(tiny_weights, xt_raw),
      },
      rounds=rounds,
      calls=100,
  )
  _report("variable_jit forward (tiny)", t["pz"], t["jnp"], "none")

  # 2. Eager call.
  t = _interleaved(
      {"pz": lambda: mlp(x).data_array, "jnp": lambda: hand_mlp(weights, x_raw)},
      rounds=rounds,
      calls=5,
  )
  _report("eager call", t["pz"], t["jnp"], "within 10x")
  small = simple_mlp.MLP.from_config(
      name="small", init_base_rng=jax.random.key(0), feature_sizes=[8, 16, 16, 8]
  )
  small_weights = _weights(small)
  xs_raw = jax.random.normal(jax.random.key(1), (4, 8))
  xs = pz.nx.wrap(xs_raw, "batch", "features")
  t = _interleaved(
      {
          "pz": lambda: small(xs).data_array,
          "jnp": lambda: hand_mlp(small_weights, xs_raw),
      },
      rounds=rounds,
      calls=20,
  )
  _report("eager call (tiny MLP, overhead)", t["pz"], t["jnp"], "within 10x")

  # 3. First call: trace + compile (caches cleared before each sample).
  first_pz, first_jnp = [], []
  for r in range(max(3, rounds // 3)):
    for name in (("pz", "jnp") if r % 2 == 0 else ("jnp", "pz")):
      jax.clear_caches()
      start = time.perf_counter()
      if name == "pz":
        _block(jax.jit(lambda model, v: model(v).unwrap("batch", "features"))(frozen, x))
        first_pz.append(time.perf_counter() - start)
      else:
        _block(jax.jit(hand_mlp)(weights, x_raw))
        first_jnp.append(time.perf_counter() - start)
  _report("first call (trace+compile+run)", first_pz, first_jnp, "<= 1.2x")

  # 4. Training step.
  for train_sizes, train_batch in ((sizes, batch), ([8, 16, 16, 8], 4)):
    t = _train_step_times(train_sizes, train_batch, rounds)
    _report(
        f"jitted train step (adam) {train_sizes[1]}w",
        t["pz"], t["jnp"], "<= 1.2x",
    )


def _train_step_times(
    sizes: list[int], batch: int, rounds: int
) -> dict[str, list[float]]:
  """Seconds per StatefulTrainer step vs a hand-written optax step (samples)."""
  x_raw = jax.random.normal(jax.random.key(1), (batch, sizes[0]))
  x = pz.nx.wrap(x_raw, "batch", "features")
  y_raw = jax.random.normal(jax.random.key(2), (batch, sizes[-1]))
  y = pz.nx.wrap(y_raw, "batch", "features")
  optimizer = optax.adam(1e-3)

  def pz_loss(*, model: Any, state: Any, rng: jax.Array, inputs: Any, targets: Any) -> Any:
    del rng
    err = model(inputs) - targets
    loss = (err * err).untag("batch", "features").mean().unwrap()
    return loss, state, loss

  train_mlp = simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(0), feature_sizes=sizes
  )
  trainer = basic_training.StatefulTrainer.build(
      root_rng=jax.random.key(3), model=train_mlp, optimizer_def=optimizer,
      loss_fn=pz_loss,
  )

  def hand_loss(ws: Any, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    err = hand_mlp(ws, inputs) - targets
    return jnp.mean(err * err)

  @jax.jit
  def hand_step(ws: Any, opt_state: Any, inputs: jax.Array, targets: jax.Array) -> Any:
    loss, grads = jax.value_and_grad(hand_loss)(ws, inputs, targets)
    updates, opt_state = optimizer.update(grads, opt_state, ws)
    return optax.apply_updates(ws, updates), opt_state, loss

  hand_state: dict[str, Any] = {"ws": _weights(train_mlp)}
  hand_state["opt"] = optimizer.init(hand_state["ws"])

  def run_hand() -> Any:
    hand_state["ws"], hand_state["opt"], loss = hand_step(
        hand_state["ws"], hand_state["opt"], x_raw, y_raw
    )
    return loss

  calls = 5 if sizes[1] >= 256 else 50
  return _interleaved(
      {"pz": lambda: trainer.step(inputs=x, targets=y), "jnp": run_hand},
      rounds=rounds,
      calls=calls,
  )


if __name__ == "__main__":
  main()
