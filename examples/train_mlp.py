"""Train a small MLP on a synthetic regression task with `StatefulTrainer`.

The task: learn y = sin(3 * x0) * cos(2 * x1) from 2-D inputs. The script
prints the loss as training progresses; it should fall steadily.

Run:  .venv/bin/python examples/train_mlp.py --steps 300
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from penzai import pz
from penzai.models import simple_mlp
from penzai.toolshed import basic_training


def make_dataset(
    key: jax.Array, num_examples: int
) -> tuple[pz.nx.NamedArray, pz.nx.NamedArray]:
  """Returns named inputs `{batch, features: 2}` and targets `{batch, features: 1}`."""
  x = jax.random.uniform(key, (num_examples, 2), minval=-1.0, maxval=1.0)
  y = jnp.sin(3.0 * x[:, :1]) * jnp.cos(2.0 * x[:, 1:])
  return pz.nx.wrap(x, "batch", "features"), pz.nx.wrap(y, "batch", "features")


def mse_loss(
    *,
    model: Any,
    state: Any,
    rng: jax.Array,
    inputs: pz.nx.NamedArray,
    targets: pz.nx.NamedArray,
) -> tuple[jax.Array, Any, dict[str, jax.Array]]:
  """Mean squared error; the loss function protocol of `StatefulTrainer`."""
  del rng
  predictions = model(inputs)
  loss = ((predictions - targets) ** 2).untag("batch", "features").mean().unwrap()
  return loss, state, {"loss": loss}


def main(argv: Sequence[str] | None = None) -> list[float]:
  """Trains the MLP and returns the recorded losses (one per report)."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=300, help="training steps")
  parser.add_argument("--batch", type=int, default=128, help="batch size")
  parser.add_argument("--hidden", type=int, default=32, help="hidden width")
  parser.add_argument("--lr", type=float, default=1e-2, help="learning rate")
  parser.add_argument("--seed", type=int, default=0, help="random seed")
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error("--steps must be at least 1")

  key_model, key_data, key_train = jax.random.split(jax.random.key(args.seed), 3)
  model = simple_mlp.MLP.from_config(
      name="mlp",
      init_base_rng=key_model,
      feature_sizes=[2, args.hidden, args.hidden, 1],
  )
  num_params = sum(
      param.value.data_array.size for param in pz.unbind_params(model)[1]
  )
  print(
      f"MLP with {num_params} parameters; training for {args.steps} steps"
      " (the first step includes compilation)"
  )

  num_examples = 1024
  inputs, targets = make_dataset(key_data, num_examples)
  trainer = basic_training.StatefulTrainer.build(
      root_rng=key_train,
      model=model,
      optimizer_def=optax.adam(args.lr),
      loss_fn=mse_loss,
  )

  report_every = max(1, args.steps // 10)
  losses: list[float] = []
  start = time.perf_counter()
  for step in range(args.steps):
    batch_index = jax.random.randint(
        jax.random.fold_in(key_data, step), (args.batch,), 0, num_examples
    )
    aux = trainer.step(
        inputs=_take_batch(inputs, batch_index),
        targets=_take_batch(targets, batch_index),
    )
    if step % report_every == 0 or step == args.steps - 1:
      loss = float(aux["loss"])
      losses.append(loss)
      elapsed = time.perf_counter() - start
      bar = "#" * int(20 * (step + 1) / args.steps)
      print(
          f"[{bar:<20}] step {step + 1:5d}/{args.steps}  loss {loss:.5f}"
          f"  ({elapsed:.1f}s)",
          flush=True,
      )
  print(f"loss went from {losses[0]:.5f} to {losses[-1]:.5f}")
  return losses


def _take_batch(array: pz.nx.NamedArray, index: jax.Array) -> pz.nx.NamedArray:
  """Picks the examples at `index` along the `batch` axis."""
  picked = array[{"batch": pz.nx.wrap(index, "picked")}]
  return picked.untag("picked").tag("batch")


if __name__ == "__main__":
  main(sys.argv[1:])
