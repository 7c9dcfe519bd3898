"""A stateful stream of JAX random keys backed by a `StateVariable` offset."""

from __future__ import annotations

import jax

from penzai.core import struct
from penzai.core import variables


@struct.pytree_dataclass
class RandomStream(struct.Struct):
  """A stateful random stream object.

  Each `next_key` call returns a new key derived from `base_key` and the
  current offset, then advances the offset. The stream is reproducible: the
  same base key and starting offset give the same sequence of keys. Since the
  offset is a `StateVariable`, use `pz.variable_jit` (or unbind the state
  variable) to use a stream inside `jax.jit`.

  Attributes:
    base_key: The base PRNG key from which all keys are derived.
    offset: A state variable counting the keys drawn so far.
  """

  base_key: jax.Array
  offset: variables.StateVariable[int | jax.Array]

  @classmethod
  def from_base_key(
      cls,
      base_key: jax.Array,
      offset_label: variables.VariableLabel = "random_stream_offset",
  ) -> RandomStream:
    """Builds a stream starting at offset 0 from a base key.

    Args:
      base_key: The base PRNG key.
      offset_label: The label of the offset's state variable. Streams that are
        unbound together need distinct labels.

    Returns:
      A new random stream.
    """
    return cls(
        base_key=base_key,
        offset=variables.StateVariable(0, label=offset_label),
    )

  def next_key(self) -> jax.Array:
    """Returns a fresh key and advances the stream's offset by one."""
    offset = self.offset.value
    key = jax.random.fold_in(self.base_key, offset)
    self.offset.value = offset + 1
    return key
