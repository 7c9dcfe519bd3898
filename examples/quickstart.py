"""A short tour of penzai's core: named arrays, selectors and shape checks.

Run with `python examples/quickstart.py`; every step prints what it shows.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from penzai import pz


@pz.pytree_dataclass
class Scale(pz.Struct):
  """A tiny struct: multiplies its input by a factor."""

  factor: jax.Array
  label: str = dataclasses.field(default="scale", metadata={"pytree_node": False})


def main() -> None:
  # Named arrays: axes are addressed by name, never by position.
  tokens = pz.nx.wrap(jnp.arange(6.0).reshape(2, 3)).tag("batch", "seq")
  weights = pz.nx.wrap(jnp.array([1.0, 10.0, 100.0])).tag("seq")
  print("tokens:", tokens.named_shape)
  print("broadcast by name (tokens * weights):")
  print((tokens * weights).untag("batch", "seq").unwrap())

  # nmap maps a positional function over every named axis.
  totals = pz.nx.nmap(jnp.sum)(tokens.untag("seq"))
  print("sum over seq, per batch:", totals.unwrap("batch"))

  # Selectors edit immutable trees without writing traversal code.
  tree = {"a": Scale(jnp.array(2.0)), "b": [Scale(jnp.array(3.0)), 4.0]}
  doubled = pz.select(tree).at_instances_of(Scale).apply(
      lambda s: dataclasses.replace(s, factor=s.factor * 2)
  )
  print("factors before:", [s.factor.item() for s in pz.select(tree).at_instances_of(Scale).get_sequence()])
  print("factors after: ", [s.factor.item() for s in pz.select(doubled).at_instances_of(Scale).get_sequence()])

  # Shape checks: dimension variables unify across a whole structure.
  match = pz.chk.check_structure(
      {"x": tokens, "w": weights},
      {
          "x": pz.chk.ArraySpec(named_shape={"batch": pz.chk.var("B"), "seq": pz.chk.var("S")}),
          "w": pz.chk.ArraySpec(named_shape={"seq": pz.chk.var("S")}),
      },
  )
  print("shape check bound:", dict(match))
  try:
    pz.chk.check_structure(
        weights, pz.chk.ArraySpec(named_shape={"seq": 4})
    )
  except pz.chk.StructureMismatchError as err:
    print("shape check caught a mismatch:")
    print(str(err).strip())


if __name__ == "__main__":
  main()
