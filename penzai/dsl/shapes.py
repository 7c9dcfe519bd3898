"""Symbolic named shapes for the static checker.

A size is an `int` or a symbol (an identifier string such as `"B"`). Symbols
unify: the first time a symbol meets a concrete size (or another symbol) the
binding is recorded with where it happened, and every later use must agree.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from penzai.dsl.errors import ShapeError

SizeLike = int | str


@dataclasses.dataclass(frozen=True)
class TensorShape:
  """The static description of one named array flowing through the model.

  Attributes:
    named_shape: axis name -> size (int or symbol name), in order.
    dtype: dtype name (e.g. "float32").
    origins: axis name -> description of where that size came from.
  """

  named_shape: Mapping[str, SizeLike]
  dtype: str = "float32"
  origins: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)

  def with_axes(self, axes: Mapping[str, SizeLike], origin: str, dtype: str | None = None) -> "TensorShape":
    """A copy with `axes` added or replaced (each recorded as coming from `origin`)."""
    named = dict(self.named_shape)
    origins = dict(self.origins)
    for name, size in axes.items():
      named[name] = size
      origins[name] = origin
    return TensorShape(named, dtype or self.dtype, origins)

  def without(self, axes: Any) -> "TensorShape":
    """A copy without the given axis names."""
    drop = set(axes)
    return TensorShape(
        {k: v for k, v in self.named_shape.items() if k not in drop},
        self.dtype,
        {k: v for k, v in self.origins.items() if k not in drop},
    )

  def with_dtype(self, dtype: str) -> "TensorShape":
    """A copy with another dtype."""
    return TensorShape(self.named_shape, dtype, self.origins)

  def origin(self, axis: str) -> str:
    """Where the size of `axis` came from (or 'the input')."""
    return self.origins.get(axis, "the input")

  def __str__(self) -> str:
    inner = ", ".join(f"{k}: {v}" for k, v in self.named_shape.items())
    return f"{{{inner}}} {self.dtype}"


class Unknown:
  """Result of a node whose check failed; later rules skip it silently."""

  def __repr__(self) -> str:
    return "<unknown>"


UNKNOWN = Unknown()


def is_floating(dtype: str) -> bool:
  """Whether a dtype name is a floating-point type."""
  return dtype.startswith(("float", "bfloat"))


def promote(a: str, b: str) -> str:
  """JAX type promotion of two dtype names."""
  if a == b:
    return a
  import jax.numpy as jnp

  return str(jnp.promote_types(a, b))


class Bindings:
  """Union-find of symbols with concrete sizes and the origin of each binding."""

  def __init__(self) -> None:
    self.parent: dict[str, str] = {}
    self.value: dict[str, int] = {}
    self.origin: dict[str, str] = {}

  def find(self, sym: str) -> str:
    root = sym
    while self.parent.get(root, root) != root:
      root = self.parent[root]
    while self.parent.get(sym, sym) != root:  # path compression
      nxt = self.parent[sym]
      self.parent[sym] = root
      sym = nxt
    return root

  def resolve(self, size: SizeLike) -> SizeLike:
    """The concrete size a size stands for, or its representative symbol."""
    if isinstance(size, int):
      return size
    root = self.find(size)
    return self.value.get(root, root)

  def unify(self, a: SizeLike, b: SizeLike, origin_a: str, origin_b: str, what: str) -> None:
    """Requires sizes `a` (from origin_a) and `b` (from origin_b) to be equal.

    Raises:
      ShapeError: `size_mismatch` for two different ints, `symbol_conflict`
        when a bound symbol meets a different size.
    """
    ra, rb = self.resolve(a), self.resolve(b)
    if ra == rb:
      return
    if isinstance(ra, int) and isinstance(rb, int):
      sym_a = a if isinstance(a, str) else None
      sym_b = b if isinstance(b, str) else None
      if sym_a or sym_b:
        sym = sym_a or sym_b
        assert sym is not None
        bound = self.origin.get(self.find(sym), "?")
        other = rb if sym_a else ra
        raise ShapeError(
            f"symbol conflict for {what}: symbol {sym} is bound to {self.resolve(sym)} ({bound}),"
            f" but {other} is required here ({origin_b if sym_a else origin_a})",
            kind="symbol_conflict",
        )
      raise ShapeError(
          f"size mismatch for {what}: expected {rb} ({origin_b}), found {ra} (from {origin_a})",
          kind="size_mismatch",
      )
    if isinstance(ra, str) and isinstance(rb, str):
      self.parent[ra] = rb
      return
    if isinstance(ra, str) and isinstance(rb, int):
      self.value[ra] = rb
      self.origin[ra] = f"bound at {origin_b}"
    elif isinstance(rb, str) and isinstance(ra, int):
      self.value[rb] = ra
      self.origin[rb] = f"bound at {origin_a}"

  def concrete(self, shape: TensorShape) -> TensorShape:
    """`shape` with every bound symbol replaced by its size."""
    return TensorShape(
        {k: self.resolve(v) for k, v in shape.named_shape.items()}, shape.dtype, shape.origins
    )
