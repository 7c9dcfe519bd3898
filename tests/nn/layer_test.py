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


# ---------------------------------------------------------------------------
# User code from the V2 guides must run unchanged.
# ---------------------------------------------------------------------------


@pz.pytree_dataclass
class StateIncrementLayer(pz.nn.Layer):
  state: pz.StateVariable[int]

  def __call__(self, x, **unused_side_inputs):
    self.state.value = self.state.value + 1
    return x


@pz.pytree_dataclass
class SimpleLinear(pz.nn.Layer):
  kernel: pz.nn.ParameterLike[pz.nx.NamedArray]
  features_axis: str = dataclasses.field(metadata={"pytree_node": False})

  def __call__(
      self, x: pz.nx.NamedArray, /, **unused_side_inputs
  ) -> pz.nx.NamedArray:
    pos_x = x.untag(self.features_axis)
    pos_kernel = self.kernel.value.untag("out_features", "in_features")
    pos_y = pz.nx.nmap(jnp.dot)(pos_kernel, pos_x)
    return pos_y.tag(self.features_axis)

  @classmethod
  def from_config(
      cls,
      name: str,
      init_base_rng: jax.Array | None,
      in_features: int,
      out_features: int,
      features_axis: str = "features",
  ) -> "SimpleLinear":
    def _initializer(key):
      arr = jax.nn.initializers.xavier_normal()(
          key, (out_features, in_features)
      )
      return pz.nx.wrap(arr).tag("out_features", "in_features")

    return cls(
        kernel=pz.nn.make_parameter(
            name=f"{name}.kernel",
            init_base_rng=init_base_rng,
            initializer=_initializer,
        ),
        features_axis=features_axis,
    )


@pz.pytree_dataclass(has_implicitly_inherited_fields=True)
class MLP(pz.nn.Sequential):
  """Sequence of Affine layers (from the V2 migration guide)."""

  @classmethod
  def from_config(
      cls,
      name: str,
      init_base_rng: jax.Array | None,
      feature_sizes: list[int],
      activation_fn=jax.nn.relu,
      feature_axis: str = "features",
  ) -> "MLP":
    children = []
    for i, (feats_in, feats_out) in enumerate(
        zip(feature_sizes[:-1], feature_sizes[1:])
    ):
      if i:
        children.append(pz.nn.Elementwise(activation_fn))
      children.append(
          pz.nn.Affine.from_config(
              name=f"{name}/Affine_{i}",
              init_base_rng=init_base_rng,
              input_axes={feature_axis: feats_in},
              output_axes={feature_axis: feats_out},
          )
      )
    return cls(sublayers=children)


def test_guide_state_increment_layer():
  inc_layer = StateIncrementLayer(pz.StateVariable(value=0))
  my_model = pz.nn.Sequential([pz.nn.Identity(), inc_layer, pz.nn.Identity()])
  _ = my_model(jnp.ones(2))
  assert inc_layer.state.value == 1


def test_guide_simple_linear():
  layer = SimpleLinear.from_config(
      name="lin", init_base_rng=jax.random.key(0), in_features=3, out_features=2
  )
  assert layer.kernel.label == "lin.kernel"
  out = layer(pz.nx.wrap(jnp.ones((4, 3)), "batch", "features"))
  assert dict(out.named_shape) == {"batch": 4, "features": 2}
  unbuilt = SimpleLinear.from_config(
      name="lin", init_base_rng=None, in_features=3, out_features=2
  )
  assert unbuilt.kernel == pz.ParameterSlot("lin.kernel")


def test_guide_mlp_and_functional_calls():
  mlp = MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(10), feature_sizes=[2, 8, 2]
  )
  labels = [p.label for p in pz.unbind_params(mlp)[1]]
  assert labels == [
      "mlp/Affine_0/Linear.weights",
      "mlp/Affine_0/AddBias.bias",
      "mlp/Affine_1/Linear.weights",
      "mlp/Affine_1/AddBias.bias",
  ]
  x = pz.nx.wrap(jnp.ones((3, 2)), "batch", "features")
  out = mlp(x)
  assert dict(out.named_shape) == {"batch": 3, "features": 2}
  # Same model built twice from the same key gives identical parameters.
  again = MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(10), feature_sizes=[2, 8, 2]
  )
  np.testing.assert_array_equal(
      again(x).unwrap("batch", "features"), out.unwrap("batch", "features")
  )
  # The "unbind, freeze, call functionally" pattern from the guide.
  model_without_vars, all_vars = pz.unbind_variables(mlp)
  frozen_vars = [var.freeze() for var in all_vars]
  output, new_vars = model_without_vars.call_with_local_vars(x, frozen_vars)
  np.testing.assert_allclose(
      output.unwrap("batch", "features"), out.unwrap("batch", "features")
  )
  assert len(new_vars) == len(frozen_vars)
