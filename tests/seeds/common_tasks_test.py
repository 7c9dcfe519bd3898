"""Seed conformance: core/nn snippets of the "Guide - Common Tasks" (seed 002).

Covers visualization, named axes, building models, custom layers, the forward
pass, parameters, state variables, random streams, selectors and attention
masks. The toolshed sections (isolate_submodel, model_rewiring,
gradient_checkpointing, basic_training, lora) are covered by the toolshed
tests; loading real pretrained checkpoints is replaced by a tiny transformer
built here.
"""

import dataclasses
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import treescope

from penzai import pz
from penzai.models import simple_mlp
from penzai.models.transformer import model_parts
from penzai.models.transformer.variants import llamalike_common


def _features(batch: int, size: int, seed: int = 0) -> pz.nx.NamedArray:
  data = np.random.default_rng(seed).normal(size=(batch, size))
  return pz.nx.wrap(jnp.asarray(data, jnp.float32)).tag("batch", "features")


def _mlp(seed: int = 10) -> simple_mlp.MLP:
  return simple_mlp.MLP.from_config(
      name="mlp",
      init_base_rng=jax.random.key(seed),
      feature_sizes=[2, 4, 4, 2],
  )


@pytest.fixture(name="model", scope="module")
def tiny_transformer() -> model_parts.TransformerLM:
  """A tiny Llama-like transformer standing in for a pretrained one."""
  config = llamalike_common.LlamalikeTransformerConfig(
      num_kv_heads=2,
      query_head_multiplier=1,
      embedding_dim=8,
      projection_dim=4,
      mlp_hidden_dim=8,
      num_decoder_blocks=1,
      vocab_size=11,
      mlp_variant="swiglu",
      tie_embedder_and_logits=True,
  )
  # Random parameters drawn with numpy (shapes from an abstract build), to
  # avoid compiling every initializer eagerly.
  shapes = jax.eval_shape(
      lambda key: pz.unbind_params(
          llamalike_common.build_llamalike_transformer(config, key),
          freeze=True,
      )[1],
      jax.random.key(0),
  )
  rng = np.random.default_rng(0)
  values = jax.tree_util.tree_map(
      lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape), s.dtype), shapes
  )
  skeleton = llamalike_common.build_llamalike_transformer(config)
  return pz.bind_variables(skeleton, [v.unfreeze_as_copy() for v in values])


def _tokens() -> pz.nx.NamedArray:
  return pz.nx.wrap(jnp.array([[1, 5, 2, 7]])).tag("batch", "seq")


# --- Visualization


class TestVisualization:

  def test_interactive_setup_needs_ipython(self):
    # In a notebook, `treescope.basic_interactive_setup(...)` installs the
    # pretty-printer; outside IPython both spellings refuse clearly.
    with pytest.raises(RuntimeError, match="outside of IPython"):
      treescope.basic_interactive_setup(autovisualize_arrays=True)
    with pytest.raises(RuntimeError, match="outside of IPython"):
      pz.ts.basic_interactive_setup(autovisualize_arrays=True)
    with pytest.raises(RuntimeError, match="outside of IPython"):
      treescope.show(_mlp())

  def test_render_array_on_named_arrays(self):
    arr = pz.nx.wrap(jnp.arange(12.0).reshape(3, 4)).tag("foo", "bar")
    figure = treescope.render_array(arr)
    assert "<" in figure._repr_html_()  # pylint: disable=protected-access
    labelled = pz.ts.render_array(
        arr,
        axis_item_labels={"foo": ["a", "b", "c"]},
        valid_mask=arr > 3,
    )
    assert labelled._repr_html_()  # pylint: disable=protected-access

  def test_models_pretty_print(self):
    text = treescope.render_to_text(_mlp())
    assert text.startswith("MLP( # Sequential")
    assert "Parameter(label='mlp/Affine_0/Linear.weights'" in text
    html = treescope.render_to_html(_mlp(), compressed=False)
    assert "Affine_0" in html


# --- Using Named Axes


class TestNamedAxes:

  def test_wrap_then_tag_or_wrap_with_names(self):
    a = pz.nx.wrap(jnp.ones([3, 4, 5])).tag("foo", "bar", "baz")
    b = pz.nx.wrap(jnp.ones([3, 4, 5]), "foo", "bar", "baz")
    for arr in (a, b):
      assert arr.named_shape == {"foo": 3, "bar": 4, "baz": 5}
      assert arr.positional_shape == ()
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)

  def test_untag_unwrap_order_sets_positional_order(self):
    data = jnp.arange(60).reshape(3, 4, 5)
    my_named_array = pz.nx.wrap(data, "foo", "bar", "baz")
    out1 = my_named_array.untag("bar", "foo", "baz").unwrap()
    out2 = my_named_array.unwrap("bar", "foo", "baz")
    np.testing.assert_array_equal(out1, data.transpose(1, 0, 2))
    np.testing.assert_array_equal(out2, data.transpose(1, 0, 2))

  @given(st.permutations(["foo", "bar", "baz"]))
  def test_untag_order_property(self, order):
    """unwrap(*order) transposes the data into exactly that order."""
    data = np.arange(24).reshape(2, 3, 4)
    arr = pz.nx.wrap(data, "foo", "bar", "baz")
    perm = [["foo", "bar", "baz"].index(n) for n in order]
    np.testing.assert_array_equal(
        arr.unwrap(*order), np.transpose(data, perm)
    )
    # Whatever the tagging order, canonicalize/order_like agree on structure.
    other = pz.nx.wrap(np.transpose(data, perm), *order)
    assert jax.tree_util.tree_structure(other.canonicalize()) == (
        jax.tree_util.tree_structure(arr.canonicalize())
    )
    assert jax.tree_util.tree_structure(other.order_like(arr)) == (
        jax.tree_util.tree_structure(arr)
    )
    np.testing.assert_array_equal(
        other.order_like(arr).unwrap("foo", "bar", "baz"), data
    )

  def test_positional_and_named_shapes(self):
    wrapped = pz.nx.wrap(jnp.zeros([3, 4, 5]))
    assert wrapped.positional_shape == (3, 4, 5)
    assert wrapped.named_shape == {}
    tagged = wrapped.tag("foo", "bar", "baz")
    assert tagged.positional_shape == ()
    assert tagged.named_shape == {"foo": 3, "bar": 4, "baz": 5}
    # Mixed shapes: untag a subset; each axis is in exactly one of the two.
    mixed = tagged.untag("bar")
    assert mixed.positional_shape == (4,)
    assert dict(mixed.named_shape) == {"foo": 3, "baz": 5}

  def test_lifting_positional_operations_with_nmap(self):
    data = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    x = pz.nx.wrap(data, "batch", "seq", "features")
    # untag -> nmap(positional op) -> tag
    y = pz.nx.nmap(jnp.cumsum)(x.untag("seq")).tag("seq")
    assert dict(y.named_shape) == {"batch": 2, "features": 4, "seq": 3}
    np.testing.assert_allclose(
        y.unwrap("batch", "seq", "features"), np.cumsum(data, axis=1),
        rtol=1e-6,
    )
    # Inside the function only the positional axes are visible.
    seen_shapes = []

    def f(v):
      seen_shapes.append(v.shape)
      return jnp.linalg.norm(v)

    norms = pz.nx.nmap(f)(x.untag("features"))
    assert seen_shapes == [(4,)]
    assert dict(norms.named_shape) == {"batch": 2, "seq": 3}

  def test_fixing_pytree_mismatches(self):
    data = jnp.arange(6.0).reshape(2, 3)
    a = pz.nx.wrap(data, "x", "y")
    b = pz.nx.wrap(data.T, "y", "x")
    assert jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b)
    ca, cb = a.canonicalize(), b.canonicalize()
    assert jax.tree_util.tree_structure(ca) == jax.tree_util.tree_structure(cb)
    np.testing.assert_array_equal(ca.data_array, cb.data_array)
    # order_like as a method and on trees.
    b_like_a = b.order_like(a)
    assert jax.tree_util.tree_structure(b_like_a) == (
        jax.tree_util.tree_structure(a)
    )
    tree = {"p": b, "q": [b]}
    target = {"p": a, "q": [a]}
    fixed = pz.nx.order_like(tree, target)
    assert jax.tree_util.tree_structure(fixed) == (
        jax.tree_util.tree_structure(target)
    )
    summed = jax.tree_util.tree_map(lambda u, v: u + v, fixed, target)
    np.testing.assert_array_equal(
        summed["p"].unwrap("x", "y"), 2 * np.asarray(data)
    )


# --- Building Models


def build_my_model(
    name: str,
    init_base_rng: jax.Array | None,
    # ... any other arguments ...
):
  # Initialize all model components and return them, e.g.:
  return pz.nn.Sequential([
      pz.nn.Affine.from_config(
          # Extend the name:
          name=f"{name}/Affine_0",
          # Pass along the initialization key (no need to split it)
          init_base_rng=init_base_rng,
          # Configure the layer (for example)
          input_axes={"features": 8},
          output_axes={"features": 8},
      ),
      # ... Add more layers as needed ...
  ])


@pz.pytree_dataclass(has_implicitly_inherited_fields=True)
class MyCustomLayer(pz.nn.Sequential):

  @classmethod
  def from_config(
      cls, name: str, init_base_rng: jax.Array | None, features: int = 3
  ):
    return cls(
        sublayers=[
            pz.nn.LayerNorm.from_config(
                name=f"{name}/norm",
                init_base_rng=init_base_rng,
                across_axes={"features": features},
            ),
            pz.nn.Elementwise(jax.nn.gelu),
        ]
    )


@pz.pytree_dataclass
class SimpleLinear(pz.nn.Layer):
  # Parameters are annotated as `ParameterLike` to allow swapping them out after
  # initialization.
  kernel: pz.nn.ParameterLike[pz.nx.NamedArray]

  # Non-Pytree fields (which are not arraylike) should be annotated as such to
  # tell JAX not to try to convert them:
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
    """Constructs a linear layer from configuration arguments."""
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


class TestBuildingModels:

  def test_mlp_from_config_and_uninitialized_slots(self):
    mlp = simple_mlp.MLP.from_config(
        name="mlp",
        init_base_rng=jax.random.key(10),
        feature_sizes=[2, 4, 4, 2],  # guide: [2, 32, 32, 2]
    )
    assert isinstance(mlp, pz.nn.Sequential)
    assert mlp(_features(2, 2)).named_shape == {"batch": 2, "features": 2}
    skeleton = simple_mlp.MLP.from_config(
        name="mlp", init_base_rng=None, feature_sizes=[2, 4, 4, 2]
    )
    slots = pz.select(skeleton).at_instances_of(pz.ParameterSlot).get_sequence()
    _, params = pz.unbind_params(mlp)
    assert [s.label for s in slots] == [p.label for p in params]
    assert len(slots) == 6

  def test_build_my_model_function(self):
    model = build_my_model("my_model", jax.random.key(1))
    assert type(model) is pz.nn.Sequential  # pylint: disable=unidiomatic-typecheck
    (affine,) = model.sublayers
    assert isinstance(affine, pz.nn.Affine)
    _, params = pz.unbind_params(model)
    assert [p.label for p in params] == [
        "my_model/Affine_0/Linear.weights",
        "my_model/Affine_0/AddBias.bias",
    ]
    out = model(_features(2, 8))
    assert out.named_shape == {"batch": 2, "features": 8}

  def test_custom_sequential_subclass(self):
    layer = MyCustomLayer.from_config("custom", jax.random.key(0))
    assert isinstance(layer, pz.nn.Sequential)
    assert issubclass(pz.nn.Affine, pz.nn.Sequential)
    assert issubclass(pz.nn.LayerNorm, pz.nn.Sequential)
    x = _features(2, 3)
    out = layer(x)
    xs = np.asarray(x.unwrap("batch", "features"))
    normed = (xs - xs.mean(-1, keepdims=True)) / np.sqrt(
        xs.var(-1, keepdims=True) + 1e-6
    )
    np.testing.assert_allclose(
        out.unwrap("batch", "features"), jax.nn.gelu(normed),
        rtol=1e-4, atol=1e-5,
    )
    # Selecting by the custom type finds it inside bigger models.
    model = pz.nn.Sequential([layer, pz.nn.Identity()])
    assert pz.select(model).at_instances_of(MyCustomLayer).count() == 1

  def test_simple_linear_custom_layer(self):
    layer = SimpleLinear.from_config(
        name="lin", init_base_rng=jax.random.key(0), in_features=3,
        out_features=2,
    )
    assert isinstance(layer.kernel, pz.Parameter)
    assert layer.kernel.label == "lin.kernel"
    # The parameter key is derived from the name, as documented.
    expected_kernel = jax.nn.initializers.xavier_normal()(
        pz.nn.derive_param_key(jax.random.key(0), "lin.kernel"), (2, 3)
    )
    np.testing.assert_array_equal(
        layer.kernel.value.unwrap("out_features", "in_features"),
        expected_kernel,
    )
    x = _features(4, 3)
    y = layer(x, unrelated_side_input=1)
    assert dict(y.named_shape) == {"batch": 4, "features": 2}
    np.testing.assert_allclose(
        y.unwrap("batch", "features"),
        np.asarray(x.unwrap("batch", "features")) @ np.asarray(
            expected_kernel
        ).T,
        rtol=1e-5, atol=1e-6,
    )
    # Static field: only the kernel is a pytree leaf.
    assert jax.tree_util.tree_leaves(layer) == [layer.kernel]
    skeleton = SimpleLinear.from_config(
        name="lin", init_base_rng=None, in_features=3, out_features=2
    )
    assert skeleton.kernel == pz.ParameterSlot("lin.kernel")


# --- Freezing pretrained model weights


def test_freeze_params_breaks_sharing_and_makes_jax_friendly():
  layer = pz.nn.Linear.from_config(
      name="l", init_base_rng=jax.random.key(0),
      input_axes={"features": 2}, output_axes={"out": 2},
  )
  model = pz.nn.Sequential([layer, layer])
  # The guide says `pz.nn.freeze_params`; the function lives at `pz`.
  frozen = pz.freeze_params(model)
  values = pz.select(frozen).at_instances_of(pz.ParameterValue).get_sequence()
  assert len(values) == 2
  assert values[0] == values[1]  # equal snapshots...
  assert pz.select(frozen).at_instances_of(pz.Parameter).count() == 0
  # ...that no longer follow the original parameter.
  layer.weights.value = layer.weights.value * 0
  assert float(jnp.abs(frozen.sublayers[0].weights.value.data_array).sum()) > 0
  # Frozen models go straight through JAX transformations.
  out = jax.jit(lambda m, x: m.sublayers[0](x))(frozen, _features(2, 2))
  assert out.named_shape == {"batch": 2, "out": 2}


# --- Checkpointing model parameters (any PyTree checkpointer works)


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_checkpoint_frozen_params_with_orbax(tmp_path):
  import orbax.checkpoint  # pylint: disable=g-import-not-at-top

  model = _mlp()
  unbound_model, frozen_params = pz.unbind_params(model, freeze=True)
  checkpointer = orbax.checkpoint.PyTreeCheckpointer()
  checkpointer.save(tmp_path / "ckpt", frozen_params)
  restored = checkpointer.restore(tmp_path / "ckpt", item=frozen_params)
  assert [p.label for p in restored] == [p.label for p in frozen_params]
  x = _features(2, 2)
  np.testing.assert_allclose(
      pz.bind_variables(unbound_model, restored)(x).unwrap("batch", "features"),
      model(x).unwrap("batch", "features"),
      rtol=1e-6,
  )


# --- Using Models and Variables


class TestForwardPass:

  def test_transformer_forward_with_side_inputs(self, model):
    tokens = _tokens()
    token_positions = pz.nx.wrap(jnp.arange(4)[None, :]).tag("batch", "seq")
    attn_mask = pz.nx.wrap(jnp.tril(jnp.ones((4, 4), bool))).tag(
        "seq", "kv_seq"
    )
    results = model(
        tokens,  # Positional input, passed to the first layer.
        token_positions=token_positions,  # Side input used by ApplyRoPE layers.
        attn_mask=attn_mask,  # Side input used by ApplyAttentionMask layers.
    )
    assert dict(results.named_shape) == {"batch": 1, "seq": 4, "vocabulary": 11}
    # The default positions are arange(seq); extra side inputs are ignored.
    np.testing.assert_allclose(
        model(tokens).unwrap("batch", "seq", "vocabulary"),
        results.unwrap("batch", "seq", "vocabulary"),
        rtol=1e-5, atol=1e-6,
    )


class TestParameters:

  def test_unbind_params(self):
    model = _mlp()
    unbound_model, params = pz.unbind_params(model)
    assert all(isinstance(p, pz.Parameter) for p in params)
    slots = pz.select(unbound_model).at_instances_of(pz.ParameterSlot)
    assert [s.label for s in slots.get_sequence()] == [p.label for p in params]
    assert pz.select(unbound_model).at_instances_of(pz.Parameter).count() == 0

  def test_three_ways_to_freeze(self):
    model = _mlp()
    unbound_model, params = pz.unbind_params(model)
    by_method = [p.freeze() for p in params]
    by_function = pz.freeze_params(params)
    _, by_unbind = pz.unbind_params(model, freeze=True)
    for vals in (by_method, list(by_function), list(by_unbind)):
      assert all(isinstance(v, pz.ParameterValue) for v in vals)
      assert [v.label for v in vals] == [p.label for p in params]
    # Frozen values are ordinary JAX pytrees.
    leaves = jax.tree_util.tree_leaves(by_unbind)
    assert all(isinstance(l, jax.Array) for l in leaves)
    # Both mutable and frozen parameters can be bound back.
    x = _features(2, 2)
    expected = model(x).unwrap("batch", "features")
    for vals in (params, by_unbind):
      rebound = pz.bind_variables(unbound_model, vals)
      np.testing.assert_allclose(
          rebound(x).unwrap("batch", "features"), expected, rtol=1e-6
      )
    assert pz.bind_variables(unbound_model, params).sublayers[0].sublayers[
        0
    ].weights is params[0]

  def test_gradients_with_respect_to_parameters(self):
    model = _mlp()
    x = _features(2, 2)

    def my_loss(params, unbound_model):
      rebound_model = pz.bind_variables(unbound_model, params)
      result = rebound_model(x)  # call it with some arguments
      loss = jnp.sum(result.unwrap("batch", "features") ** 2)
      return loss

    unbound_model, frozen_params = pz.unbind_params(model, freeze=True)
    grads = jax.grad(my_loss, argnums=0)(frozen_params, unbound_model)
    assert jax.tree_util.tree_structure(grads) == (
        jax.tree_util.tree_structure(frozen_params)
    )
    assert [g.label for g in grads] == [p.label for p in frozen_params]
    # Check one gradient entry against a finite difference.
    eps = 1e-3
    bias = frozen_params[-1]
    bumped = dataclasses.replace(
        bias, value=bias.value + pz.nx.wrap(jnp.array([eps, 0.0]), "features")
    )
    bumped_params = frozen_params[:-1] + (bumped,)
    fd = (
        my_loss(bumped_params, unbound_model)
        - my_loss(frozen_params, unbound_model)
    ) / eps
    np.testing.assert_allclose(
        grads[-1].value.unwrap("features")[0], fd, rtol=2e-2
    )

  def test_forward_mode_derivatives(self):
    model = _mlp()
    x = _features(2, 2)

    def my_func(params, unbound_model):
      rebound_model = pz.bind_variables(unbound_model, params)
      return rebound_model(x).unwrap("batch", "features")

    unbound_model, frozen_params = pz.unbind_params(model, freeze=True)

    # Build your input perturbations somehow
    perturbations = jax.tree_util.tree_map(jnp.ones_like, frozen_params)
    # The guide writes `jax.jvp(my_loss)(...)`; JAX's signature is
    # `jax.jvp(fun, primals, tangents)`. The unbound model has no array
    # leaves, so it serves as its own (empty) tangent.
    primal_out, tangents = jax.jvp(
        my_func,
        (frozen_params, unbound_model),
        (perturbations, unbound_model),
    )
    np.testing.assert_allclose(
        primal_out, model(x).unwrap("batch", "features"), rtol=1e-6
    )
    eps = 1e-3
    shifted = jax.tree_util.tree_map(lambda p: p + eps, frozen_params)
    fd = (my_func(shifted, unbound_model) - primal_out) / eps
    np.testing.assert_allclose(tangents, fd, rtol=5e-2, atol=5e-3)


@pz.pytree_dataclass
class CountCalls(pz.nn.Layer):
  count: pz.StateVariable[int]

  def __call__(self, x, /, **side_inputs):
    self.count.value = self.count.value + side_inputs.get("step", 1)
    return x


class TestStateVariables:

  def test_unbind_state_vars_and_stateless_call(self):
    counter = CountCalls(pz.StateVariable(value=0, label="calls"))
    model = pz.nn.Sequential([_mlp(), counter])
    x = _features(2, 2)
    side_inputs = {"step": 5}

    stateless_model, frozen_states = pz.unbind_state_vars(model, freeze=True)
    assert [type(s) for s in frozen_states] == [pz.StateVariableValue]
    y, new_state = stateless_model.stateless_call(
        frozen_states, x, **side_inputs
    )
    assert new_state[0].label == "calls"
    assert new_state[0].value == 5
    assert counter.count.value == 0  # the original is untouched
    # Safe under JAX transformations.
    y2, new_state2 = jax.jit(
        lambda s, x: stateless_model.stateless_call(s, x, step=2)
    )(new_state, x)
    assert new_state2[0].value == 7
    np.testing.assert_allclose(
        y.unwrap("batch", "features"), y2.unwrap("batch", "features"),
        rtol=1e-6,
    )
    # pz.freeze_state_vars gives the same snapshots.
    _, mutable_states = pz.unbind_state_vars(model)
    assert pz.freeze_state_vars(mutable_states)[0] == frozen_states[0]

  def test_unfreeze_as_copy_and_bind(self):
    counter = CountCalls(pz.StateVariable(value=0, label="calls"))
    stateless, (frozen,) = pz.unbind_state_vars(counter, freeze=True)
    temp = frozen.unfreeze_as_copy()
    assert isinstance(temp, pz.StateVariable) and temp.label == "calls"
    bound = pz.bind_variables(stateless, [temp])
    bound(jnp.zeros(()))
    assert temp.value == 1
    assert frozen.value == 0
    assert counter.count.value == 0


# --- Running models with stochastic components


@pz.pytree_dataclass
class NoiseLayer(pz.nn.Layer):
  stream: pz.RandomStream

  def __call__(self, x, /, **unused_side_inputs):
    return x + jax.random.normal(self.stream.next_key(), x.shape)


def test_random_stream_side_input_and_attribute():
  stochastic_model = simple_mlp.DropoutMLP.from_config(
      name="mlp", init_base_rng=jax.random.key(0), feature_sizes=[2, 4, 4, 2],
      drop_rate=0.5,
  )
  input_array = _features(2, 2)
  results = stochastic_model(
      input_array,
      random_stream=pz.RandomStream.from_base_key(jax.random.key(42))
  )
  again = stochastic_model(
      input_array,
      random_stream=pz.RandomStream.from_base_key(jax.random.key(42))
  )
  np.testing.assert_array_equal(
      results.unwrap("batch", "features"), again.unwrap("batch", "features")
  )
  # Each next_key() call gives a new key.
  stream = pz.RandomStream.from_base_key(jax.random.key(42))
  k0, k1 = stream.next_key(), stream.next_key()
  assert not np.array_equal(jax.random.key_data(k0), jax.random.key_data(k1))
  assert stream.offset.value == 2
  # Stored as an attribute: different numbers on every call.
  layer = NoiseLayer(pz.RandomStream.from_base_key(jax.random.key(0)))
  first, second = layer(jnp.zeros(3)), layer(jnp.zeros(3))
  assert not np.array_equal(first, second)


# --- Modifying and Patching Models


@pz.pytree_dataclass
class AppendIntermediate(pz.nn.Layer):
  saved: pz.StateVariable[list[Any]]

  def __call__(self, x, **_side_inputs):
    self.saved.value = self.saved.value + [x]
    return x


class TestModifyingModels:

  def test_select_by_path_type_and_combination(self, model):
    def some_func(layer):
      return pz.nn.NamedGroup("patched", [layer])

    by_path = pz.select(model).at(lambda model: model.body.sublayers[2]).apply(
        some_func
    )
    assert isinstance(by_path.body.sublayers[2], pz.nn.NamedGroup)
    assert isinstance(
        by_path.body.sublayers[2].sublayers[0], model_parts.TransformerBlock
    )
    # The original is untouched; parameters are shared with the copy.
    assert isinstance(model.body.sublayers[2], model_parts.TransformerBlock)
    _, orig_params = pz.unbind_params(model)
    _, new_params = pz.unbind_params(by_path)
    assert all(a is b for a, b in zip(orig_params, new_params))

    by_type = pz.select(model).at_instances_of(pz.nn.Linear).apply(some_func)
    n_linear = pz.select(model).at_instances_of(pz.nn.Linear).count()
    assert n_linear > 0
    assert pz.select(by_type).at_instances_of(pz.nn.NamedGroup).count() == (
        n_linear
    )

    query_only = (
        pz.select(model)
        .at_instances_of(pz.nn.Attention)
        .at(lambda attn: attn.input_to_query)
        .at_instances_of(pz.nn.Linear)
        .apply(some_func)
    )
    (attn,) = pz.select(query_only).at_instances_of(pz.nn.Attention).get_sequence()
    assert pz.select(attn.input_to_query).at_instances_of(
        pz.nn.NamedGroup
    ).count() == 1
    assert pz.select(attn.input_to_key).at_instances_of(
        pz.nn.NamedGroup
    ).count() == 0

  def test_insert_before_and_after(self):
    mlp = _mlp()
    marker = pz.nn.NamedGroup("marker", [])
    after = pz.select(mlp).at_instances_of(pz.nn.Elementwise).insert_after(marker)
    before = pz.select(mlp).at_instances_of(pz.nn.Elementwise).insert_before(
        marker
    )
    assert [type(l).__name__ for l in after.sublayers] == [
        "Affine", "Elementwise", "NamedGroup", "Affine", "Elementwise",
        "NamedGroup", "Affine",
    ]
    assert [type(l).__name__ for l in before.sublayers] == [
        "Affine", "NamedGroup", "Elementwise", "Affine", "NamedGroup",
        "Elementwise", "Affine",
    ]
    x = _features(2, 2)
    np.testing.assert_allclose(
        after(x).unwrap("batch", "features"), mlp(x).unwrap("batch", "features")
    )

  def test_capturing_intermediate_activations(self):
    model = _mlp()
    inputs = _features(2, 2)
    SomeLayer = pz.nn.Affine  # pylint: disable=invalid-name

    # Make a copy of the model that includes the intervention.
    intermediates_cell = pz.StateVariable([])
    modified_model = (
        pz.select(model)
        .at_instances_of(SomeLayer)
        .insert_after(AppendIntermediate(intermediates_cell))
    )

    # Call the model, then retrieve the saved intermediate.
    _ = modified_model(inputs, some_side_input=1)
    intermediates = intermediates_cell.value
    assert len(intermediates) == 3
    np.testing.assert_allclose(
        intermediates[-1].unwrap("batch", "features"),
        model(inputs).unwrap("batch", "features"),
        rtol=1e-6,
    )
    # The intervention is visible when pretty-printing the modified model.
    assert "AppendIntermediate(" in treescope.render_to_text(modified_model)

  def test_remove_from_parent(self):
    model = simple_mlp.DropoutMLP.from_config(
        name="mlp", init_base_rng=jax.random.key(0), feature_sizes=[2, 4, 2],
        drop_rate=0.5,
    )
    without_dropout = (
        pz.select(model)
        .at_instances_of(pz.nn.StochasticDropout)
        .remove_from_parent()
    )
    assert type(without_dropout) is simple_mlp.DropoutMLP  # pylint: disable=unidiomatic-typecheck
    assert [type(l).__name__ for l in without_dropout.sublayers] == [
        "Affine", "Elementwise", "Affine"
    ]
    # No random stream needed any more.
    out = without_dropout(_features(2, 2))
    assert out.named_shape == {"batch": 2, "features": 2}
    # Only list elements can be removed.
    with pytest.raises(ValueError, match="children of lists or tuples"):
      pz.select(model).at(lambda m: m.sublayers[0].sublayers[0].weights) \
          .remove_from_parent()


class TestAttentionMasks:

  def test_swap_causal_masks_for_explicit_masks(self, model):
    explicit_attn_model = (
      pz.select(model)
      .at_instances_of(
        pz.nn.ApplyCausalAttentionMask
        | pz.nn.ApplyCausalSlidingWindowAttentionMask
      )
      .apply(lambda old: pz.nn.ApplyExplicitAttentionMask(
        mask_input_name="attn_mask",
        masked_out_value=old.masked_out_value,
      ))
    )
    assert pz.select(explicit_attn_model).at_instances_of(
        pz.nn.ApplyCausalAttentionMask
    ).count() == 0
    assert pz.select(explicit_attn_model).at_instances_of(
        pz.nn.ApplyExplicitAttentionMask
    ).count() == 1

    n_seq = 4
    tokens = _tokens()
    token_positions = pz.nx.wrap(jnp.arange(n_seq)[None, :]).tag("batch", "seq")
    causal = pz.nx.wrap(jnp.tril(jnp.ones((n_seq, n_seq), bool))).tag(
        "seq", "kv_seq"
    )
    attn_mask = causal.untag("seq", "kv_seq").tag("seq", "kv_seq")
    token_logits = explicit_attn_model(
      tokens, token_positions=token_positions, attn_mask=attn_mask
    )
    # A causal explicit mask reproduces the built-in causal model.
    np.testing.assert_allclose(
        token_logits.unwrap("batch", "seq", "vocabulary"),
        model(tokens).unwrap("batch", "seq", "vocabulary"),
        rtol=1e-4, atol=1e-5,
    )
    # A full mask lets position 0 see the future, changing its logits.
    full = pz.nx.wrap(jnp.ones((n_seq, n_seq), bool)).tag("seq", "kv_seq")
    unmasked_logits = explicit_attn_model(
        tokens, token_positions=token_positions, attn_mask=full
    )
    assert not np.allclose(
        unmasked_logits.unwrap("batch", "seq", "vocabulary")[0, 0],
        token_logits.unwrap("batch", "seq", "vocabulary")[0, 0],
    )
    # The mask side input is now required.
    with pytest.raises(KeyError, match="attn_mask"):
      explicit_attn_model(tokens, token_positions=token_positions)
