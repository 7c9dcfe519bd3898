"""Tests for penzai.nn.layer: the Layer base, stateless calls, rendering."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import treescope

from penzai import pz


@pz.pytree_dataclass
class Counter(pz.nn.Layer):
  """Adds a parameter and counts calls in a state variable."""

  scale: Any
  count: Any

  def __call__(self, x, /, **side_inputs):
    self.count.value = self.count.value + 1
    return x * self.scale.value


@pz.pytree_dataclass
class UsesStream(pz.nn.Layer):

  def __call__(self, x, /, **side_inputs):
    return x + jax.random.uniform(side_inputs["rng"].next_key())


@pz.pytree_dataclass
class CallsSuper(pz.nn.Layer):

  def __call__(self, x, /, **side_inputs):
    return super().__call__(x, **side_inputs)


def test_layer_is_abstract():
  with pytest.raises(TypeError):
    pz.nn.Layer()
  with pytest.raises(NotImplementedError):
    CallsSuper()(1)
  assert issubclass(pz.nn.Layer, pz.Struct)


def test_stateless_call_returns_new_state_and_leaves_originals():
  param = pz.Parameter(value=jnp.array(3.0), label="scale")
  state = pz.StateVariable(value=jnp.array(0), label="count")
  layer = Counter(param, state)
  stateless, frozen_states = pz.unbind_state_vars(layer, freeze=True)
  result, new_states = stateless.stateless_call(frozen_states, jnp.array(2.0))
  np.testing.assert_allclose(result, 6.0)
  assert len(new_states) == 1
  assert isinstance(new_states[0], pz.StateVariableValue)
  assert new_states[0].label == "count"
  assert int(new_states[0].value) == 1
  # Originals untouched: the state var was not mutated, the param not frozen.
  assert int(state.value) == 0
  assert stateless.scale is param


def test_stateless_call_under_jit_and_with_argument_slots():
  layer = UsesStream()
  stream = pz.RandomStream.from_base_key(jax.random.key(0))
  stream_slotted, stream_vars = pz.unbind_state_vars(stream, freeze=True)

  @jax.jit
  def run(values, x):
    return layer.stateless_call(values, x, rng=stream_slotted)

  out1, new_vars = run(stream_vars, jnp.array(0.0))
  out2, newer_vars = run(new_vars, jnp.array(0.0))
  assert int(new_vars[0].value) == 1
  assert int(newer_vars[0].value) == 2
  assert float(out1) != float(out2)


def test_stateless_call_freezes_bound_variables_during_call():
  state = pz.StateVariable(value=0, label="count")
  layer = Counter(pz.Parameter(value=jnp.array(1.0), label="s"), state)
  with pytest.raises(AttributeError):
    # The bound state variable becomes a frozen value: it can't be mutated.
    layer.stateless_call([], jnp.array(1.0))
  assert int(state.value) == 0


def test_call_with_local_vars_spelling():
  layer = Counter(
      pz.Parameter(value=jnp.array(2.0), label="s"),
      pz.StateVariable(value=0, label="c"),
  )
  stateless, states = pz.unbind_state_vars(layer, freeze=True)
  out, new = stateless.call_with_local_vars(jnp.array(1.0), states)
  np.testing.assert_allclose(out, 2.0)
  assert int(new[0].value) == 1


def test_bind_variables_method():
  param = pz.Parameter(value=jnp.array(5.0), label="s")
  layer = Counter(param, pz.StateVariable(value=0, label="c"))
  unbound, params = pz.unbind_params(layer)
  assert isinstance(unbound.scale, pz.ParameterSlot)
  rebound = unbound.bind_variables(params)
  assert rebound.scale is param
  frozen_rebound = unbound.bind_variables([param.freeze()])
  assert isinstance(frozen_rebound.scale, pz.ParameterValue)
  with pytest.raises(ValueError):
    unbound.bind_variables([pz.Parameter(value=1.0, label="unused")])
  unbound.bind_variables(
      [*params, pz.Parameter(value=1.0, label="unused")], allow_unused=True
  )


def test_layer_rendering_annotations_and_colors():
  affine = pz.nn.Affine.from_config(
      name="a",
      init_base_rng=jax.random.key(0),
      input_axes={"i": 2},
      output_axes={"o": 2},
  )
  text = treescope.render_to_text(affine)
  lines = text.splitlines()
  assert lines[0] == "Affine( # Sequential"
  assert lines[1].strip() == "sublayers=["
  assert "Linear(" in text
  assert "label='a/Linear.weights'" in text
  plain = treescope.render_to_text(pz.nn.Sequential([pz.nn.Identity()]))
  assert "# Sequential" not in plain
  roundtrip = treescope.render_to_text(affine, roundtrip_mode=True)
  assert roundtrip.splitlines()[0] == (
      "penzai.nn.linear_and_affine.Affine( # Sequential"
  )
  assert "penzai.nn.linear_and_affine.Linear(" in roundtrip
  html = treescope.render_to_html(affine, compressed=False)
  assert "#eba875" in html


def test_checked_sequential_subclass_annotation():

  @pz.pytree_dataclass(has_implicitly_inherited_fields=True)
  class Block(pz.nn.CheckedSequential):
    pass

  block = Block(pz.chk.ANY, pz.chk.ANY, [pz.nn.Identity()] * 20)
  text = treescope.render_to_text(block)
  assert text.splitlines()[0] == "Block( # CheckedSequential"
  plain = pz.nn.CheckedSequential(pz.chk.ANY, pz.chk.ANY, [pz.nn.Identity()] * 20)
  assert "# CheckedSequential" not in treescope.render_to_text(plain)


def test_named_scopes_in_jaxpr():
  model = pz.nn.Sequential([
      pz.nn.Affine.from_config(
          name="a",
          init_base_rng=jax.random.key(0),
          input_axes={"i": 2},
          output_axes={"o": 2},
      ),
  ])
  frozen = pz.freeze_params(model)
  x = pz.nx.wrap(jnp.ones(2), "i")
  jaxpr = jax.make_jaxpr(lambda m, v: m(v).unwrap("o"))(frozen, x)
  stacks = [str(eqn.source_info.name_stack) for eqn in jaxpr.jaxpr.eqns]
  assert any("Sequential/0/Affine/0/Linear" in s for s in stacks), stacks
  assert any("Affine/1/AddBias" in s for s in stacks), stacks
