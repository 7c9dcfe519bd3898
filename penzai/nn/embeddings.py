"""Token embeddings (lookup and decoding with a shared table) and RoPE."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from penzai.core import named_axes
from penzai.core import struct
from penzai.nn import layer as layer_base
from penzai.nn import linear_and_affine
from penzai.nn import parameters

NamedArray = named_axes.NamedArray
NamedArrayBase = named_axes.NamedArrayBase


@struct.pytree_dataclass
class EmbeddingTable(struct.Struct):
  """A table of embedding vectors, one per vocabulary entry.

  Not a layer: wrap it in `EmbeddingLookup` (tokens -> vectors) or
  `EmbeddingDecode` (vectors -> logits). Sharing one table object between the
  two ties their weights.

  Attributes:
    embeddings: Parameter holding the table; has `vocabulary_axis` plus the
      embedding axes.
    vocabulary_axis: Name of the vocabulary axis of the table.
  """

  embeddings: parameters.ParameterLike[NamedArray]
  vocabulary_axis: str = dataclasses.field(metadata={"pytree_node": False})

  @classmethod
  def from_config(
      cls,
      name: str,
      init_base_rng: jax.Array | None,
      vocab_size: int,
      embedding_axes: dict[str, int],
      vocabulary_axis: str = "vocabulary",
      initializer: linear_and_affine.LinearOperatorWeightInitializer = functools.partial(
          linear_and_affine.variance_scaling_initializer,
          scale=1.0,
          mode="fan_out",
          distribution="normal",
      ),
      dtype: np.typing.DTypeLike = np.float32,
  ) -> EmbeddingTable:
    """Builds a new embedding table.

    Args:
      name: Name prefix; the parameter label is `f"{name}.embeddings"`.
      init_base_rng: Base key for initialization, or None to leave a
        `ParameterSlot`.
      vocab_size: Number of vocabulary entries.
      embedding_axes: Axis names and sizes of each embedding vector.
      vocabulary_axis: Name of the vocabulary axis.
      initializer: Initializer; the vocabulary axis is treated as a parallel
        axis (it does not contribute to the fan).
      dtype: Parameter dtype.

    Returns:
      A new `EmbeddingTable`.
    """
    if vocabulary_axis in embedding_axes:
      raise ValueError(
          f"`vocabulary_axis` {vocabulary_axis!r} should not appear in"
          f" `embedding_axes`; got embedding_axes={embedding_axes}."
      )
    return cls(
        embeddings=parameters.make_parameter(
            f"{name}.embeddings",
            init_base_rng,
            initializer,
            input_axes={},
            output_axes=embedding_axes,
            parallel_axes={vocabulary_axis: vocab_size},
            convolution_spatial_axes={},
            dtype=dtype,
        ),
        vocabulary_axis=vocabulary_axis,
    )


@struct.pytree_dataclass
class EmbeddingLookup(layer_base.Layer):
  """Looks up embedding vectors for integer token indices.

  The output has the token array's axes plus the table's embedding axes.
  """

  table: EmbeddingTable

  def __call__(
      self, token_index: NamedArrayBase, /, **_unused_side_inputs: Any
  ) -> NamedArrayBase:
    """Returns the embeddings of the tokens in `token_index`."""
    with jax.named_scope(type(self).__name__):
      return self.table.embeddings.value[  # type: ignore[return-value]
          {self.table.vocabulary_axis: token_index}
      ]


@struct.pytree_dataclass
class EmbeddingDecode(layer_base.Layer):
  """Maps output embeddings to vocabulary logits with the (transposed) table."""

  table: EmbeddingTable

  def __call__(
      self, out_embeddings: NamedArrayBase, /, **_unused_side_inputs: Any
  ) -> NamedArrayBase:
    """Returns logits over the vocabulary axis for `out_embeddings`."""
    with jax.named_scope(type(self).__name__):
      table = self.table.embeddings.value
      contracted = tuple(
          ax for ax in table.named_shape if ax != self.table.vocabulary_axis
      )
      return linear_and_affine.contract(contracted, out_embeddings, table)


def _check_rope_inputs(
    inputs: Any, positions: Any, embedding_axis: str
) -> None:
  """Validates the main input and positions side input of a RoPE layer."""
  if not named_axes.is_namedarray(inputs):
    raise TypeError(
        "ApplyRoPE expects a NamedArray input with embedding axis"
        f" {embedding_axis!r}, but got {type(inputs).__name__}."
    )
  if not named_axes.is_namedarray(positions):
    raise TypeError(
        "ApplyRoPE expects the positions side input to be a NamedArray, but"
        f" got {type(positions).__name__}."
    )
  if embedding_axis in positions.named_shape:
    raise ValueError(
        f"Embedding axis {embedding_axis} should not already be part of the"
        " positions side input."
    )
  if positions.positional_shape:
    raise ValueError("Positions side input must have no positional axes.")
  if any(ax not in inputs.named_shape for ax in positions.named_shape):
    raise ValueError(
        "Every axis of the positions should appear in the main input. Got"
        f" positions.named_shape={dict(positions.named_shape)} and"
        f" inputs.named_shape={dict(inputs.named_shape)}."
    )
  if embedding_axis not in inputs.named_shape:
    raise ValueError(
        f"ApplyRoPE: the input has no embedding axis {embedding_axis!r}; its"
        f" named shape is {dict(inputs.named_shape)}."
    )


def _rotate(
    x: jax.Array, position: jax.Array, max_wavelength: float, scale_factor: float
) -> jax.Array:
  """Applies rotate-half RoPE to one 1-D embedding vector at `position`."""
  d = x.shape[0]
  fraction = 2 * jnp.arange(0, d // 2, dtype=jnp.float32) / d
  timescale = jnp.float32(max_wavelength) ** fraction
  theta = jnp.asarray(position).astype(jnp.float32) / timescale
  theta = theta / scale_factor
  sin, cos = jnp.sin(theta), jnp.cos(theta)
  first, second = jnp.split(x, 2)
  return jnp.concatenate(
      [first * cos - second * sin, second * cos + first * sin]
  )


# Jitted as a whole so that eager calls compile one fused program instead of
# one small program per primitive; under an outer jit it is simply inlined.
@functools.partial(
    jax.jit, static_argnames=("embedding_axis", "max_wavelength", "scale_factor")
)
def _apply_rope(
    inputs: named_axes.NamedArrayBase,
    positions: named_axes.NamedArrayBase,
    *,
    embedding_axis: str,
    max_wavelength: float,
    scale_factor: float,
) -> NamedArray:
  """Rotates every slice of `inputs` along `embedding_axis` by its position."""
  rotate = functools.partial(
      _rotate, max_wavelength=max_wavelength, scale_factor=scale_factor
  )
  out = named_axes.nmap(rotate)(inputs.untag(embedding_axis), positions)
  return out.tag(embedding_axis).astype(inputs.dtype)  # type: ignore[return-value]


@struct.pytree_dataclass
class ApplyRoPE(layer_base.Layer):
  """Applies rotary position embeddings ("rotate-half" convention).

  Attributes:
    embedding_axis: Axis to rotate (its size must be even).
    max_wavelength: Base wavelength (often 10000).
    positions_input_name: Side input holding integer token positions, a named
      array whose axes all appear in the main input.
    scale_factor: Linear position-interpolation factor (angles are divided by
      it); must be >= 1.
  """

  embedding_axis: str = dataclasses.field(metadata={"pytree_node": False})
  max_wavelength: float = dataclasses.field(metadata={"pytree_node": False})
  positions_input_name: str = dataclasses.field(
      metadata={"pytree_node": False}
  )
  scale_factor: float = dataclasses.field(
      default=1.0, metadata={"pytree_node": False}
  )

  def __call__(
      self, inputs: NamedArrayBase, /, **side_inputs: Any
  ) -> NamedArrayBase:
    """Rotates each slice of `inputs` along `embedding_axis` by its position."""
    with jax.named_scope(type(self).__name__):
      if self.positions_input_name not in side_inputs:
        raise KeyError(
            f"ApplyRoPE requires the side input {self.positions_input_name!r},"
            " but it was not provided; got side inputs"
            f" {sorted(map(repr, side_inputs))}."
        )
      positions = side_inputs[self.positions_input_name]
      _check_rope_inputs(inputs, positions, self.embedding_axis)
      if self.scale_factor < 1.0:
        raise ValueError(
            f"scale_factor must be >= 1.0, got {self.scale_factor}"
        )
      return _apply_rope(
          inputs,
          positions,
          embedding_axis=self.embedding_axis,
          max_wavelength=self.max_wavelength,
          scale_factor=self.scale_factor,
      )


@struct.pytree_dataclass
class ApplyRoPEToSubset(layer_base.Layer):
  """Applies RoPE to the first `rope_subset_size` entries of the embedding.

  The remaining entries pass through unchanged (partial rotary, as in
  GPT-NeoX).
  """

  embedding_axis: str = dataclasses.field(metadata={"pytree_node": False})
  max_wavelength: float = dataclasses.field(metadata={"pytree_node": False})
  rope_subset_size: int = dataclasses.field(metadata={"pytree_node": False})
  positions_input_name: str = dataclasses.field(
      metadata={"pytree_node": False}
  )
  scale_factor: float = dataclasses.field(
      default=1.0, metadata={"pytree_node": False}
  )

  def __call__(
      self, inputs: NamedArrayBase, /, **side_inputs: Any
  ) -> NamedArrayBase:
    """Rotates the leading subset of `embedding_axis`; keeps the rest."""
    with jax.named_scope(type(self).__name__):
      if not named_axes.is_namedarray(inputs) or (
          self.embedding_axis not in inputs.named_shape
      ):
        raise ValueError(
            "ApplyRoPEToSubset expects a NamedArray input with embedding axis"
            f" {self.embedding_axis!r}, but got {inputs!r}."
        )
      rotated_part = inputs[{self.embedding_axis: slice(None, self.rope_subset_size)}]
      passthrough = inputs[{self.embedding_axis: slice(self.rope_subset_size, None)}]
      rope = ApplyRoPE(
          embedding_axis=self.embedding_axis,
          max_wavelength=self.max_wavelength,
          positions_input_name=self.positions_input_name,
          scale_factor=self.scale_factor,
      )
      rotated = rope(rotated_part, **side_inputs)
      return named_axes.concatenate(  # type: ignore[return-value]
          [rotated, passthrough], self.embedding_axis
      )
