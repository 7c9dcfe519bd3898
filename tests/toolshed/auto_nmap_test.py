"""Tests for penzai.toolshed.auto_nmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.toolshed import auto_nmap


def test_wrapped_functions_vectorize_over_named_axes():
  njnp = auto_nmap.wrap_module(jnp)
  assert isinstance(njnp, auto_nmap.AutoNmapModuleWrapper)
  x = pz.nx.wrap(jnp.arange(6.0).reshape(2, 3), "batch", "features")
  total = njnp.sum(x.untag("features"))
  assert isinstance(total, pz.nx.NamedArray)
  assert dict(total.named_shape) == {"batch": 2}
  np.testing.assert_allclose(total.unwrap("batch"), [3.0, 12.0])
  pos = njnp.arange(7).tag("pos")
  assert dict(pos.named_shape) == {"pos": 7}
  np.testing.assert_array_equal(pos.unwrap("pos"), np.arange(7))


def test_non_named_arguments_pass_through_and_layout_rule():
  njnp = auto_nmap.wrap_module(jnp)
  zeros = njnp.zeros((2, 4))
  assert isinstance(zeros, pz.nx.NamedArrayBase)
  assert zeros.positional_shape == (2, 4)
  assert dict(zeros.named_shape) == {}
  scalar = njnp.asarray(3.0)
  assert isinstance(scalar, pz.nx.NamedArray)
  assert scalar.positional_shape == ()


def test_submodules_are_wrapped_and_tuples_returned():
  njax = auto_nmap.wrap_module(jax)
  nn_wrapper = njax.nn
  assert isinstance(nn_wrapper, auto_nmap.AutoNmapModuleWrapper)
  ids = pz.nx.wrap(jnp.array([0, 3, 1]), "seq")
  onehot = njax.nn.one_hot(ids, 5)
  assert dict(onehot.named_shape) == {"seq": 3}
  assert onehot.positional_shape == (5,)
  np.testing.assert_array_equal(
      onehot.tag("vocab").unwrap("seq", "vocab"), np.eye(5)[[0, 3, 1]]
  )
  njnp = auto_nmap.wrap_module(jnp)
  x = pz.nx.wrap(jnp.array([[3.0, 1.0, 2.0]]), "batch", "k")
  vals, idx = njnp.linalg.eigh(
      njnp.diag(x.untag("k"))
  )
  assert dict(vals.named_shape) == {"batch": 1}
  assert dict(idx.named_shape) == {"batch": 1}
  np.testing.assert_allclose(
      vals.tag("eig").unwrap("batch", "eig"), [[1.0, 2.0, 3.0]], rtol=1e-6
  )


def test_errors_for_missing_and_non_callable_attributes():
  njnp = auto_nmap.wrap_module(jnp)
  with pytest.raises(AttributeError):
    njnp.this_function_does_not_exist  # pylint: disable=pointless-statement
  with pytest.raises(
      AttributeError,
      match="Cannot wrap attribute pi of .*unrecognized type",
  ):
    njnp.pi  # pylint: disable=pointless-statement
