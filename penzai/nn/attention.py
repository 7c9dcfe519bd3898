"""Attention layers: masking layers, `Attention` and the KV-caching variant.

Attention in Penzai is a routing combinator: five sublayers compute queries,
keys, values, attention weights (including masking and softmax) and the
output. Masks are separate layers so they can be inspected and swapped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp

from penzai.core import named_axes
from penzai.core import struct
from penzai.core import variables
from penzai.nn import layer as layer_base
from penzai.nn import layer_stack

NamedArray = named_axes.NamedArray
NamedArrayBase = named_axes.NamedArrayBase


def _get_side_input(owner: object, side_inputs: dict[str, Any], key: Hashable) -> Any:
  """Looks up a required side input, raising a descriptive `KeyError`."""
  try:
    return side_inputs[key]  # type: ignore[index]
  except KeyError:
    raise KeyError(
        f"{type(owner).__name__} requires the side input {key!r}, but it was"
        f" not provided; got side inputs {sorted(map(repr, side_inputs))}."
    ) from None


def _check_named(owner: object, what: str, value: Any, axis: Any) -> None:
  """Checks that `value` is a named array containing the named `axis`."""
  if not named_axes.is_namedarray(value):
    raise TypeError(
        f"{type(owner).__name__}: {what} must be a NamedArray with axis"
        f" {axis!r}, but got {type(value).__name__}."
    )
  if axis not in value.named_shape:
    raise ValueError(
        f"{type(owner).__name__}: {what} must have a named axis {axis!r}, but"
        f" its named shape is {dict(value.named_shape)}."
    )


def _causal_positions(
    owner: ApplyCausalAttentionMask | ApplyCausalSlidingWindowAttentionMask,
    side_inputs: dict[str, Any],
) -> tuple[Any, Any]:
  """Returns query positions and key positions renamed to `kv_seq_axis`."""
  q = _get_side_input(owner, side_inputs, owner.query_positions_input_name)
  kv = _get_side_input(owner, side_inputs, owner.kv_positions_input_name)
  _check_named(owner, "the query positions", q, owner.seq_axis)
  _check_named(owner, "the key/value positions", kv, owner.seq_axis)
  return q, kv.untag(owner.seq_axis).tag(owner.kv_seq_axis)


@struct.pytree_dataclass
class ApplyExplicitAttentionMask(layer_base.Layer):
  """Masks attention logits with a boolean mask given as a side input.

  Attributes:
    mask_input_name: Name of the side input holding the boolean mask (True =
      keep). It broadcasts against the logits by axis name.
    masked_out_value: Value written where the mask is False.
  """

  mask_input_name: str = dataclasses.field(metadata={"pytree_node": False})
  masked_out_value: jax.typing.ArrayLike

  def __call__(
      self, x: NamedArrayBase, /, **side_inputs: Any
  ) -> NamedArrayBase:
    """Replaces masked-out entries of `x` with `masked_out_value`."""
    with jax.named_scope(type(self).__name__):
      mask = _get_side_input(self, side_inputs, self.mask_input_name)
      return named_axes.nmap(jnp.where)(mask, x, self.masked_out_value)


@struct.pytree_dataclass
class ApplyCausalAttentionMask(layer_base.Layer):
  """Masks attention logits so each query only sees earlier (or equal) keys.

  Token positions come from side inputs (integer named arrays with a
  `seq_axis` axis); a negative position marks padding, never attended to.

  Attributes:
    masked_out_value: Value written where attention is not allowed.
    query_positions_input_name: Side input holding the query positions.
    kv_positions_input_name: Side input holding the key/value positions.
    seq_axis: Query sequence axis name.
    kv_seq_axis: Key/value sequence axis name.
  """

  masked_out_value: jax.typing.ArrayLike
  query_positions_input_name: str = dataclasses.field(
      default="token_positions", metadata={"pytree_node": False}
  )
  kv_positions_input_name: str = dataclasses.field(
      default="token_positions", metadata={"pytree_node": False}
  )
  seq_axis: str = dataclasses.field(
      default="seq", metadata={"pytree_node": False}
  )
  kv_seq_axis: str = dataclasses.field(
      default="kv_seq", metadata={"pytree_node": False}
  )

  def __call__(
      self, x: NamedArrayBase, /, **side_inputs: Any
  ) -> NamedArrayBase:
    """Applies the causal mask to attention logits `x`."""
    with jax.named_scope(type(self).__name__):
      q, kv = _causal_positions(self, side_inputs)
      mask = (q >= kv) & (kv >= 0)
      return named_axes.nmap(jnp.where)(mask, x, self.masked_out_value)


@struct.pytree_dataclass
class ApplyCausalSlidingWindowAttentionMask(layer_base.Layer):
  """Causal mask that also hides keys more than a window size in the past.

  Attributes:
    masked_out_value: Value written where attention is not allowed.
    sliding_window_size: Number of positions (including the current one) that
      each query may attend to.
    query_positions_input_name: Side input holding the query positions.
    kv_positions_input_name: Side input holding the key/value positions.
    seq_axis: Query sequence axis name.
    kv_seq_axis: Key/value sequence axis name.
  """

  masked_out_value: jax.typing.ArrayLike
  sliding_window_size: int | jax.typing.ArrayLike
  query_positions_input_name: str = dataclasses.field(
      default="token_positions", metadata={"pytree_node": False}
  )
  kv_positions_input_name: str = dataclasses.field(
      default="token_positions", metadata={"pytree_node": False}
  )
  seq_axis: str = dataclasses.field(
      default="seq", metadata={"pytree_node": False}
  )
  kv_seq_axis: str = dataclasses.field(
      default="kv_seq", metadata={"pytree_node": False}
  )

  def __call__(
      self, x: NamedArrayBase, /, **side_inputs: Any
  ) -> NamedArrayBase:
    """Applies the causal sliding-window mask to attention logits `x`."""
    with jax.named_scope(type(self).__name__):
      q, kv = _causal_positions(self, side_inputs)
      mask = (q >= kv) & (q - kv < self.sliding_window_size) & (kv >= 0)
      return named_axes.nmap(jnp.where)(mask, x, self.masked_out_value)


@struct.pytree_dataclass
class Attention(layer_base.Layer):
  """Generic attention combinator.

  Computes `q`, `k`, `v` from the input, then `attn = query_key_to_attn((q,
  k))` and returns `attn_value_to_output((attn, v))`. All side inputs are
  forwarded to every sublayer.
  """

  input_to_query: layer_base.Layer
  input_to_key: layer_base.Layer
  input_to_value: layer_base.Layer
  query_key_to_attn: layer_base.Layer
  attn_value_to_output: layer_base.Layer

  def __call__(self, x: Any, /, **side_inputs: Any) -> Any:
    """Runs the attention computation on `x`."""
    with jax.named_scope(type(self).__name__):
      query = self.input_to_query(x, **side_inputs)
      key = self.input_to_key(x, **side_inputs)
      value = self.input_to_value(x, **side_inputs)
      attn = self.query_key_to_attn((query, key), **side_inputs)
      return self.attn_value_to_output((attn, value), **side_inputs)

  def treescope_color(self) -> str:
    return "oklch(0.785 0.103 38.5 / 1.0)"


def _write_into_cache(
    cache: NamedArray, new: NamedArray, sequence_axis: str, end: Any
) -> NamedArray:
  """Writes `new` into `cache` along `sequence_axis` starting at `end`."""

  def write(c: jax.Array, n: jax.Array, e: Any) -> jax.Array:
    return jax.lax.dynamic_update_slice(c, n.astype(c.dtype), (e,))

  updated = named_axes.nmap(write)(
      cache.untag(sequence_axis), new.untag(sequence_axis), end
  ).tag(sequence_axis)
  # Keep the cache's own layout so its pytree structure is stable over calls.
  if set(updated.named_shape) == set(cache.named_shape):
    return updated.order_like(cache)  # type: ignore[return-value]
  return updated  # type: ignore[return-value]


@struct.pytree_dataclass
class KVCachingAttention(layer_base.Layer):
  """Attention with a key/value cache kept in a `StateVariable`.

  Each call writes the new keys and values into the cache at the index given
  by the side input `kv_cache_end_index_key`, then attends over the full
  cache (masking must hide slots that have not been written yet).
  """

  input_to_query: layer_base.Layer
  input_to_key: layer_base.Layer
  input_to_value: layer_base.Layer
  query_key_to_attn: layer_base.Layer
  attn_value_to_output: layer_base.Layer
  sequence_axis: str = dataclasses.field(metadata={"pytree_node": False})
  kv_cache_end_index_key: Hashable = dataclasses.field(
      metadata={"pytree_node": False}
  )
  kv_cache: variables.StateVariable[tuple[NamedArray, NamedArray]]

  def __call__(self, x: Any, /, **side_inputs: Any) -> Any:
    """Runs cached attention, updating the cache state variable."""
    with jax.named_scope(type(self).__name__):
      end = _get_side_input(self, side_inputs, self.kv_cache_end_index_key)
      key_cache, value_cache = self.kv_cache.value
      query = self.input_to_query(x, **side_inputs)
      key = self.input_to_key(x, **side_inputs)
      value = self.input_to_value(x, **side_inputs)
      for what, arr in (("keys", key), ("values", value)):
        _check_named(self, f"the computed {what}", arr, self.sequence_axis)
      new_key_cache = _write_into_cache(
          key_cache, key, self.sequence_axis, end
      )
      new_value_cache = _write_into_cache(
          value_cache, value, self.sequence_axis, end
      )
      self.kv_cache.value = (new_key_cache, new_value_cache)
      attn = self.query_key_to_attn((query, new_key_cache), **side_inputs)
      return self.attn_value_to_output((attn, new_value_cache), **side_inputs)

  @classmethod
  def from_uncached(
      cls,
      original: Attention,
      sequence_axis: str,
      cache_len: int,
      cached_axes: dict[str, int],
      cache_end_index_key: Hashable,
      cache_dtype: jax.typing.DTypeLike = jnp.float32,
      cache_label: variables.VariableLabel | None = None,
      layerstack_axes: dict[named_axes.AxisName, int] | None = None,
  ) -> KVCachingAttention:
    """Builds a caching copy of `original` with an empty (zero) cache.

    Args:
      original: The uncached attention layer whose sublayers are reused.
      sequence_axis: Axis along which keys and values are cached.
      cache_len: Length of the cache along `sequence_axis`.
      cached_axes: Other axes of the cached keys/values (e.g. batch, heads,
        projection), with sizes.
      cache_end_index_key: Side-input name holding the write position.
      cache_dtype: Dtype of the cache.
      cache_label: Label of the cache state variable (automatic if None).
      layerstack_axes: Stack axes if this layer lives inside `LayerStack`s;
        the cache gets those axes and per-layer metadata.

    Returns:
      A `KVCachingAttention` sharing `original`'s sublayers.
    """
    if layerstack_axes:
      metadata: dict[Any, Any] = {
          "layerstack_axes": {
              ax: layer_stack.LayerStackVarBehavior.PER_LAYER
              for ax in layerstack_axes
          }
      }
    else:
      metadata = {}
      layerstack_axes = {}
    cache_shape: dict[named_axes.AxisName, int] = {}
    cache_shape.update(cached_axes)
    cache_shape.update(layerstack_axes)
    cache_shape[sequence_axis] = cache_len
    empty = named_axes.zeros(
        cache_shape,
        dtype=cache_dtype,
    )
    return cls(
        input_to_query=original.input_to_query,
        input_to_key=original.input_to_key,
        input_to_value=original.input_to_value,
        query_key_to_attn=original.query_key_to_attn,
        attn_value_to_output=original.attn_value_to_output,
        sequence_axis=sequence_axis,
        kv_cache_end_index_key=cache_end_index_key,
        kv_cache=variables.StateVariable(
            label=cache_label, value=(empty, empty), metadata=metadata
        ),
    )
