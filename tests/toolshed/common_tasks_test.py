"""End-to-end checks of the code paths in the "Common Tasks" guide.

Each test follows one section of the guide, written the way a user would
(`from penzai import pz`, toolshed modules imported explicitly), on tiny
models. A small Llama-like transformer is built once per module.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.models import simple_mlp
from penzai.models.transformer import model_parts
from penzai.models.transformer.variants import llamalike_common
from penzai.toolshed import gradient_checkpointing
from penzai.toolshed import isolate_submodel
from penzai.toolshed import lora
from penzai.toolshed import model_rewiring
from penzai.toolshed import save_intermediates

VOCAB = 11


def _config() -> llamalike_common.LlamalikeTransformerConfig:
  return llamalike_common.LlamalikeTransformerConfig(
      num_kv_heads=1,
      query_head_multiplier=2,
      embedding_dim=8,
      projection_dim=4,
      mlp_hidden_dim=8,
      num_decoder_blocks=2,
      vocab_size=VOCAB,
      mlp_variant="swiglu",
      tie_embedder_and_logits=False,
  )


@pytest.fixture(scope="module")
def transformer() -> model_parts.TransformerLM:
  return llamalike_common.build_llamalike_transformer(
      _config(), init_base_rng=jax.random.key(0)
  )


def _tokens() -> pz.nx.NamedArray:
  return pz.nx.wrap(
      jnp.array([[1, 2, 3, 4, 5], [6, 5, 4, 9, 1]]), "batch", "seq"
  )


def _logits(model, tokens, **side_inputs) -> np.ndarray:
  out = model(tokens, **side_inputs)
  return np.asarray(out.unwrap("batch", "seq", "vocabulary"))


def _mlp(seed: int = 10) -> simple_mlp.MLP:
  return simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(seed), feature_sizes=[2, 8, 2]
  )


def _mlp_input() -> pz.nx.NamedArray:
  return pz.nx.wrap(
      jnp.array([[0.5, -1.0], [2.0, 0.25], [-0.5, 0.0]]), "batch", "features"
  )


def _np(arr, *names) -> np.ndarray:
  return np.asarray(arr.unwrap(*names))


# ---------------------------------------------------------------------------
# Using named axes


def test_named_axes_conversions_and_lifting():
  arr = pz.nx.wrap(jnp.ones([3, 4, 5])).tag("foo", "bar", "baz")
  same = pz.nx.wrap(jnp.ones([3, 4, 5]), "foo", "bar", "baz")
  assert dict(arr.named_shape) == dict(same.named_shape)
  assert arr.positional_shape == ()
  assert arr.untag("bar", "foo", "baz").unwrap().shape == (4, 3, 5)
  assert arr.unwrap("bar", "foo", "baz").shape == (4, 3, 5)
  mixed = arr.untag("bar")
  assert mixed.positional_shape == (4,)
  assert dict(mixed.named_shape) == {"foo": 3, "baz": 5}
  data = jnp.arange(12.0).reshape(3, 4)
  x = pz.nx.wrap(data, "rows", "cols")
  summed = pz.nx.nmap(jnp.sum)(x.untag("cols"))
  np.testing.assert_allclose(summed.unwrap("rows"), data.sum(axis=1))
  reordered = pz.nx.wrap(data.T, "cols", "rows")
  canon_a, canon_b = x.canonicalize(), reordered.canonicalize()
  assert jax.tree_util.tree_structure(canon_a) == jax.tree_util.tree_structure(
      canon_b
  )
  like = pz.nx.order_like(reordered, x)
  assert jax.tree_util.tree_structure(like) == jax.tree_util.tree_structure(x)


# ---------------------------------------------------------------------------
# Building models


def test_models_from_config_with_and_without_rng():
  mlp = simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(10), feature_sizes=[2, 8, 8, 2]
  )
  assert len(pz.unbind_params(mlp)[1]) == 6
  unbound = simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=None, feature_sizes=[2, 8, 8, 2]
  )
  slots = pz.select(unbound).at_instances_of(pz.ParameterSlot).get_sequence()
  assert len(slots) == 6
  # Binding the initialized parameters into the slots gives the same model.
  rebound = pz.bind_variables(unbound, pz.unbind_params(mlp)[1])
  x = pz.nx.wrap(jnp.ones((1, 2)), "batch", "features")
  np.testing.assert_allclose(
      _np(rebound(x), "batch", "features"), _np(mlp(x), "batch", "features")
  )


def _build_my_model(name: str, init_base_rng: jax.Array | None):
  return pz.nn.Sequential([
      pz.nn.Affine.from_config(
          name=f"{name}/Affine_0",
          init_base_rng=init_base_rng,
          input_axes={"features": 8},
          output_axes={"features": 8},
      ),
      pz.nn.Elementwise(jax.nn.relu),
  ])


@pz.pytree_dataclass(has_implicitly_inherited_fields=True)
class MyCustomLayer(pz.nn.Sequential):

  @classmethod
  def from_config(cls, name: str, init_base_rng: jax.Array | None):
    return cls(sublayers=[_build_my_model(name, init_base_rng)])


@pz.pytree_dataclass
class SimpleLinear(pz.nn.Layer):
  """The custom layer example from the guide."""

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


def test_custom_layers_from_the_guide():
  layer = MyCustomLayer.from_config(name="custom", init_base_rng=jax.random.key(1))
  x = pz.nx.wrap(jnp.linspace(-1, 1, 16).reshape(2, 8), "batch", "features")
  out = layer(x)
  assert dict(out.named_shape) == {"batch": 2, "features": 8}
  assert np.all(_np(out, "batch", "features") >= 0)
  assert (
      pz.select(layer).at_instances_of(MyCustomLayer).count() == 1
  )
  linear = SimpleLinear.from_config(
      name="lin", init_base_rng=jax.random.key(2), in_features=8,
      out_features=3,
  )
  assert linear.kernel.label == "lin.kernel"
  y = linear(x)
  kernel = _np(linear.kernel.value, "out_features", "in_features")
  np.testing.assert_allclose(
      _np(y, "batch", "features"),
      _np(x, "batch", "features") @ kernel.T,
      rtol=1e-5, atol=1e-6,
  )


# ---------------------------------------------------------------------------
# Using models and variables


def test_forward_pass_and_freezing(transformer):
  tokens = _tokens()
  positions = pz.nx.arange("seq", 5)
  logits = _logits(transformer, tokens, token_positions=positions)
  assert logits.shape == (2, 5, VOCAB)
  frozen_model = pz.freeze_params(transformer)
  assert not pz.select(frozen_model).at_instances_of(pz.Parameter).count()
  np.testing.assert_allclose(
      _logits(frozen_model, tokens, token_positions=positions), logits,
      rtol=1e-5, atol=1e-5,
  )


def test_gradients_and_forward_mode_derivatives():
  mlp = _mlp()
  x = _mlp_input()

  def my_loss(params, unbound_model):
    rebound_model = pz.bind_variables(unbound_model, params)
    result = rebound_model(x)
    return jnp.sum(result.unwrap("batch", "features") ** 2)

  unbound_model, frozen_params = pz.unbind_params(mlp, freeze=True)
  grads = jax.grad(my_loss, argnums=0)(frozen_params, unbound_model)
  assert [g.label for g in grads] == [p.label for p in frozen_params]
  # Finite-difference check on one bias entry.
  eps = 1e-3
  bias_index = [p.label for p in frozen_params].index("mlp/Affine_1/AddBias.bias")
  bumped = list(frozen_params)
  bias = bumped[bias_index]
  bumped[bias_index] = dataclasses.replace(
      bias, value=bias.value + pz.nx.wrap(jnp.array([eps, 0.0]), "features")
  )
  numeric = (my_loss(tuple(bumped), unbound_model)
             - my_loss(frozen_params, unbound_model)) / eps
  analytic = float(grads[bias_index].value.unwrap("features")[0])
  assert abs(float(numeric) - analytic) < 2e-2 * max(1.0, abs(analytic))

  def my_func(params, unbound_model):
    return pz.bind_variables(unbound_model, params)(x)

  perturbations = jax.tree_util.tree_map(jnp.ones_like, frozen_params)
  primal_out, tangent_out = jax.jvp(
      lambda p: my_func(p, unbound_model), (frozen_params,), (perturbations,)
  )
  assert dict(tangent_out.named_shape) == dict(primal_out.named_shape)


def test_state_variables_and_random_streams():
  model = simple_mlp.DropoutMLP.from_config(
      name="mlp", init_base_rng=jax.random.key(3), feature_sizes=[2, 8, 2],
      drop_rate=0.5,
  )
  x = _mlp_input()
  stream = pz.RandomStream.from_base_key(jax.random.key(42))
  a = model(x, random_stream=stream)
  b = model(x, random_stream=stream)
  assert int(stream.offset.value) > 0
  assert not np.allclose(_np(a, "batch", "features"), _np(b, "batch", "features"))
  # Stateless call with frozen state reproduces a stateful call.
  counter_model = pz.nn.Sequential([
      save_intermediates.SaveIntermediate(),
      pz.nn.Elementwise(jnp.tanh),
  ])
  stateless_model, frozen_states = pz.unbind_state_vars(
      counter_model, freeze=True
  )
  y, new_state = stateless_model.stateless_call(frozen_states, x)
  np.testing.assert_allclose(
      _np(y, "batch", "features"), np.tanh(_np(x, "batch", "features")),
      rtol=1e-6,
  )
  np.testing.assert_allclose(
      _np(new_state[0].value, "batch", "features"), _np(x, "batch", "features")
  )
  # The original (mutable) state variable was not touched.
  assert counter_model.sublayers[0].saved.value is None


# ---------------------------------------------------------------------------
# Modifying and patching models


def test_modifying_layers_by_position_and_type(transformer):
  tokens = _tokens()
  marked = (
      pz.select(transformer)
      .at(lambda model: model.body.sublayers[2])
      .apply(lambda block: pz.nn.Sequential([block]))
  )
  assert isinstance(marked.body.sublayers[2], pz.nn.Sequential)
  np.testing.assert_allclose(
      _logits(marked, tokens), _logits(transformer, tokens), rtol=1e-5,
      atol=1e-5,
  )
  all_linears = pz.select(transformer).at_instances_of(pz.nn.Linear)
  query_linears = (
      pz.select(transformer)
      .at_instances_of(pz.nn.Attention)
      .at(lambda attn: attn.input_to_query)
      .at_instances_of(pz.nn.Linear)
  )
  assert query_linears.count() == 2
  assert all_linears.count() > query_linears.count()
  # Zeroing the query projections makes attention uniform over the allowed
  # keys: the result changes, everything else is shared.
  zeroed = query_linears.apply(
      lambda lin: dataclasses.replace(
          lin, weights=pz.ParameterValue(
              value=lin.weights.value * 0, label=lin.weights.label
          )
      )
  )
  assert not np.allclose(_logits(zeroed, tokens), _logits(transformer, tokens))
  with_identity = query_linears.insert_after(pz.nn.Identity())
  np.testing.assert_allclose(
      _logits(with_identity, tokens), _logits(transformer, tokens),
      rtol=1e-5, atol=1e-5,
  )


@pz.pytree_dataclass
class AppendIntermediate(pz.nn.Layer):
  saved: pz.StateVariable[list[Any]]

  def __call__(self, x, **_side_inputs):
    self.saved.value = self.saved.value + [x]
    return x


@pz.pytree_dataclass
class ScaleIntermediate(pz.nn.Layer):
  factor: float = dataclasses.field(metadata={"pytree_node": False})

  def __call__(self, x, **_side_inputs):
    return x * self.factor


def test_capturing_and_modifying_intermediates():
  model = _mlp()
  x = _mlp_input()
  intermediates_cell = pz.StateVariable([])
  modified_model = (
      pz.select(model)
      .at_instances_of(pz.nn.Elementwise)
      .insert_after(AppendIntermediate(intermediates_cell))
  )
  out = modified_model(x)
  np.testing.assert_allclose(
      _np(out, "batch", "features"), _np(model(x), "batch", "features")
  )
  (hidden,) = intermediates_cell.value
  expected_hidden = model.sublayers[1](model.sublayers[0](x))
  np.testing.assert_allclose(
      _np(hidden, "batch", "features"),
      _np(expected_hidden, "batch", "features"),
  )
  # Modifying the intermediate: double the hidden activation. The last
  # Affine is W h + b, so the output becomes W (2h) + b = 2 out - b.
  doubled = (
      pz.select(model)
      .at_instances_of(pz.nn.Elementwise)
      .insert_after(ScaleIntermediate(2.0))
  )
  bias = _np(model.sublayers[2].sublayers[2].bias.value, "features")
  np.testing.assert_allclose(
      _np(doubled(x), "batch", "features"),
      2 * _np(out, "batch", "features") - bias,
      rtol=1e-5, atol=1e-6,
  )
  # The toolshed's built-in saver layer does the same.
  saving = (
      pz.select(model)
      .at_instances_of(pz.nn.Elementwise)
      .insert_after(save_intermediates.SaveIntermediate())
  )
  saving(x)
  (saver,) = (
      pz.select(saving)
      .at_instances_of(save_intermediates.SaveIntermediate)
      .get_sequence()
  )
  np.testing.assert_allclose(
      _np(saver.saved.value, "batch", "features"),
      _np(expected_hidden, "batch", "features"),
  )


def test_saving_all_intermediates_of_a_transformer(transformer):
  tokens = _tokens()
  patched = save_intermediates.saving_all_intermediates(transformer)
  np.testing.assert_allclose(
      _logits(patched, tokens), _logits(transformer, tokens), rtol=1e-5,
      atol=1e-5,
  )
  values = [
      v.value
      for v in pz.select(patched).at_instances_of(pz.StateVariable)
      .get_sequence()
  ]
  assert len(values) > 20
  assert all(v is not None for v in values)
  np.testing.assert_allclose(
      _np(values[-1], "batch", "seq", "vocabulary"), _logits(transformer, tokens),
      rtol=1e-5, atol=1e-5,
  )


def test_isolating_an_attention_layer(transformer):
  tokens = _tokens()
  positions = pz.nx.arange("seq", 5)
  iso = isolate_submodel.call_and_extract_submodel(
      pz.select(transformer).at_instances_of(pz.nn.Attention)
      .pick_nth_selected(0),
      tokens,
      token_positions=positions,
  )
  assert isinstance(iso, isolate_submodel.IsolatedSubmodel)
  assert isinstance(iso.submodel, pz.nn.Attention)
  assert iso.initial_var_values == ()
  assert set(iso.saved_side_inputs) == {"token_positions"}
  out, new_vars = iso.submodel.stateless_call(
      iso.initial_var_values, iso.saved_arg, **iso.saved_side_inputs
  )
  assert new_vars == ()
  names = tuple(out.named_shape)
  np.testing.assert_allclose(
      _np(out, *names), _np(iso.saved_output, *names), rtol=1e-6
  )
  # Intervening on the isolated layer: dropping the causal mask changes the
  # first position (it now sees the future) but not the last one.
  unmasked = (
      pz.select(iso.submodel)
      .at_instances_of(pz.nn.ApplyCausalAttentionMask)
      .apply(lambda _: pz.nn.Identity())
  )
  out2 = unmasked(iso.saved_arg, **iso.saved_side_inputs)
  a = _np(out.untag("seq").tag("seq"), *names)
  b = _np(out2.order_like(out), *names)
  seq_axis = names.index("seq")
  np.testing.assert_allclose(
      np.take(a, 4, axis=seq_axis), np.take(b, 4, axis=seq_axis),
      rtol=1e-5, atol=1e-6,
  )
  assert not np.allclose(np.take(a, 0, axis=seq_axis),
                         np.take(b, 0, axis=seq_axis))


def test_removing_parts_of_models(transformer):
  model = _mlp()
  x = _mlp_input()
  no_activation = (
      pz.select(model).at_instances_of(pz.nn.Elementwise).remove_from_parent()
  )
  assert len(no_activation.sublayers) == 2
  w0 = _np(model.sublayers[0].sublayers[0].weights.value, "features",
           "features_out")
  b0 = _np(model.sublayers[0].sublayers[2].bias.value, "features")
  w1 = _np(model.sublayers[2].sublayers[0].weights.value, "features",
           "features_out")
  b1 = _np(model.sublayers[2].sublayers[2].bias.value, "features")
  xs = _np(x, "batch", "features")
  np.testing.assert_allclose(
      _np(no_activation(x), "batch", "features"), (xs @ w0 + b0) @ w1 + b1,
      rtol=1e-5, atol=1e-6,
  )
  # Removing dropout layers after training makes the model deterministic.
  dropout_model = simple_mlp.DropoutMLP.from_config(
      name="mlp", init_base_rng=jax.random.key(3), feature_sizes=[2, 8, 2],
      drop_rate=0.5,
  )
  deterministic = (
      pz.select(dropout_model)
      .at_instances_of(pz.nn.StochasticDropout)
      .remove_from_parent()
  )
  assert not pz.select(deterministic).at_instances_of(
      pz.nn.StochasticDropout
  ).count()
  r1, r2 = deterministic(x), deterministic(x)
  np.testing.assert_array_equal(
      _np(r1, "batch", "features"), _np(r2, "batch", "features")
  )
  # Removing a whole transformer block.
  blocks = pz.select(transformer).at_instances_of(model_parts.TransformerBlock)
  assert blocks.count() == 2
  one_block = blocks.pick_nth_selected(1).remove_from_parent()
  assert (
      pz.select(one_block).at_instances_of(model_parts.TransformerBlock).count()
      == 1
  )
  assert _logits(one_block, _tokens()).shape == (2, 5, VOCAB)


@pz.pytree_dataclass
class _Constant(pz.nn.Layer):
  value: Any

  def __call__(self, x: Any, /, **side_inputs: Any) -> Any:
    return self.value


def test_linearizing_layers(transformer):
  tokens = _tokens()
  # Linearizing around the actual input reproduces the model exactly.
  same_point = (
      pz.select(transformer)
      .at_instances_of(model_parts.TransformerFeedForward)
      .apply(
          lambda original_layer: model_rewiring.LinearizeAndAdjust(
              linearize_around=pz.nn.Identity(),
              evaluate_at=pz.nn.Identity(),
              target=original_layer,
          )
      )
  )
  np.testing.assert_allclose(
      _logits(same_point, tokens), _logits(transformer, tokens),
      rtol=1e-4, atol=1e-5,
  )
  # Around a constant point: f(p) + J_f(p) (x - p), checked by hand via jvp.
  mlp = _mlp()
  p = np.linspace(-0.35, 0.35, 8).astype(np.float32)  # hidden width 8
  point = pz.nx.wrap(jnp.asarray(p), "features")
  x = _mlp_input()
  patched = (
      pz.select(mlp)
      .at(lambda m: m.sublayers[1])
      .apply(
          lambda original_layer: model_rewiring.LinearizeAndAdjust(
              linearize_around=_Constant(point),
              evaluate_at=pz.nn.Identity(),
              target=original_layer,
          )
      )
  )
  first = _np(mlp.sublayers[0](x), "batch", "features")
  # relu is linear with slope 1 where p > 0 and 0 where p < 0.
  lin_relu = np.maximum(p, 0) + (p > 0) * (first - p)
  expected = mlp.sublayers[2](pz.nx.wrap(jnp.asarray(lin_relu), "batch",
                                         "features"))
  np.testing.assert_allclose(
      _np(patched(x), "batch", "features"),
      _np(expected, "batch", "features"),
      rtol=1e-5, atol=1e-6,
  )


def test_explicit_attention_masks(transformer):
  tokens = _tokens()
  explicit_attn_model = (
      pz.select(transformer)
      .at_instances_of(
          pz.nn.ApplyCausalAttentionMask
          | pz.nn.ApplyCausalSlidingWindowAttentionMask
      )
      .apply(
          lambda old: pz.nn.ApplyExplicitAttentionMask(
              mask_input_name="attn_mask",
              masked_out_value=old.masked_out_value,
          )
      )
  )
  token_positions = pz.nx.arange("seq", 5)
  # attn_mask: boolean, named shape {"seq": n, "kv_seq": n}; True = keep.
  causal = pz.nx.wrap(np.tril(np.ones((5, 5), dtype=bool)), "seq", "kv_seq")
  np.testing.assert_allclose(
      _logits(explicit_attn_model, tokens, token_positions=token_positions,
              attn_mask=causal),
      _logits(transformer, tokens, token_positions=token_positions),
      rtol=1e-5, atol=1e-5,
  )
  # A diagonal mask (attend only to yourself) leaves position 0 unchanged in
  # every layer (it only sees itself under the causal mask too), but changes
  # all later positions.
  diagonal = pz.nx.wrap(np.eye(5, dtype=bool), "seq", "kv_seq")
  diag = _logits(explicit_attn_model, tokens,
                 token_positions=token_positions, attn_mask=diagonal)
  base = _logits(transformer, tokens)
  np.testing.assert_allclose(diag[:, 0], base[:, 0], rtol=1e-5, atol=1e-5)
  for pos in range(1, 5):
    assert not np.allclose(diag[:, pos], base[:, pos])


def test_gradient_checkpointing_transformer(transformer):
  tokens = _tokens()
  checkpointed_model = (
      pz.select(transformer)
      .at_instances_of(pz.nn.Attention)
      .apply(gradient_checkpointing.Checkpointed)
  )
  assert (
      pz.select(checkpointed_model)
      .at_instances_of(gradient_checkpointing.Checkpointed)
      .count()
      == 2
  )

  def loss(params, unbound):
    logits = pz.bind_variables(unbound, params)(tokens)
    return jnp.mean(
        jax.nn.log_softmax(logits.unwrap("batch", "seq", "vocabulary"))[..., 0]
    )

  unbound_a, params_a = pz.unbind_params(transformer, freeze=True)
  unbound_b, params_b = pz.unbind_params(checkpointed_model, freeze=True)
  value_and_grad = jax.jit(jax.value_and_grad(loss))
  value_a, grads_a = value_and_grad(params_a, unbound_a)
  value_b, grads_b = value_and_grad(params_b, unbound_b)
  np.testing.assert_allclose(value_a, value_b, rtol=1e-5)
  for ga, gb in zip(grads_a, grads_b):
    assert ga.label == gb.label
    np.testing.assert_allclose(
        np.asarray(ga.value.data_array), np.asarray(gb.value.data_array),
        rtol=1e-4, atol=1e-6,
    )


# ---------------------------------------------------------------------------
# Training and fine-tuning


def test_lora_fine_tuning_with_stateful_trainer(transformer):
  optax = pytest.importorskip("optax")
  from penzai.toolshed import basic_training  # pylint: disable=g-import-not-at-top

  tokens = _tokens()
  frozen = pz.freeze_params(transformer)
  loraified = lora.loraify_linears_in_selection(
      pz.select(frozen)
      .at_instances_of(pz.nn.Attention)
      .at(lambda attn: attn.input_to_query),
      rank=2,
      init_base_rng=jax.random.key(7),
  )
  assert (
      pz.select(loraified).at_instances_of(lora.LowRankAdapter).count() == 2
  )
  _, params = pz.unbind_params(loraified)
  labels = [p.label for p in params]
  assert len(labels) == 4
  assert labels[0] == (
      "LoRA:TransformerLM.body/Sequential.sublayers[1]/TransformerBlock"
      ".sublayers[0]/Residual.delta/Sequential.sublayers[1]/Attention"
      ".input_to_query/Sequential.sublayers[0]/LoRA_A.weights"
  )
  # Zero-initialized B: the adapted model initially equals the base model.
  np.testing.assert_allclose(
      _logits(loraified, tokens), _logits(transformer, tokens),
      rtol=1e-5, atol=1e-5,
  )
  base_values = [
      np.asarray(v.value.data_array)
      for v in pz.select(loraified).at_instances_of(pz.ParameterValue)
      .get_sequence()
  ]

  def loss_fn(*, model, state, rng, tokens):
    del rng
    logits = model(tokens).unwrap("batch", "seq", "vocabulary")
    targets = jnp.roll(tokens.unwrap("batch", "seq"), -1, axis=1)
    nll = -jnp.take_along_axis(
        jax.nn.log_softmax(logits), targets[..., None], axis=-1
    )
    return jnp.mean(nll), state, {"loss": jnp.mean(nll)}

  trainer = basic_training.StatefulTrainer.build(
      root_rng=jax.random.key(0),
      model=loraified,
      optimizer_def=optax.adam(0.05),
      loss_fn=loss_fn,
  )
  losses = [float(trainer.step(tokens=tokens)["loss"]) for _ in range(4)]
  assert losses[-1] < losses[0]
  # Only the adapter parameters changed.
  after = [
      np.asarray(v.value.data_array)
      for v in pz.select(loraified).at_instances_of(pz.ParameterValue)
      .get_sequence()
  ]
  for a, b in zip(base_values, after):
    np.testing.assert_array_equal(a, b)
  b_weights = [p for p in params if p.label.endswith("LoRA_B.weights")]
  assert any(np.any(np.asarray(p.value.data_array) != 0) for p in b_weights)


# ---------------------------------------------------------------------------
# Checkpointing model parameters with orbax


def _checkpoint_manager(directory: str):
  ocp = pytest.importorskip("orbax.checkpoint")
  return ocp, ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False),
  )


def test_orbax_round_trip_into_fresh_model(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  model = _mlp(seed=1)
  x = _mlp_input()
  _, frozen_params = pz.unbind_params(model, freeze=True)
  checkpointer = ocp.StandardCheckpointer()
  path = os.fspath(tmp_path / "params")
  checkpointer.save(path, frozen_params)
  checkpointer.wait_until_finished()
  # A freshly built model (different init) provides the target structure.
  fresh = _mlp(seed=2)
  fresh_unbound, fresh_params = pz.unbind_params(fresh, freeze=True)
  assert not np.allclose(
      _np(fresh(x), "batch", "features"), _np(model(x), "batch", "features")
  )
  restored = checkpointer.restore(path, fresh_params)
  assert [p.label for p in restored] == [p.label for p in frozen_params]
  restored_model = pz.bind_variables(
      fresh_unbound, restored, unfreeze_as_copy=True
  )
  assert all(
      isinstance(p, pz.Parameter) for p in pz.unbind_params(restored_model)[1]
  )
  np.testing.assert_array_equal(
      _np(restored_model(x), "batch", "features"),
      _np(model(x), "batch", "features"),
  )


def test_interrupted_save_leaves_previous_checkpoint_readable(
    tmp_path, monkeypatch
):
  ocp, manager = _checkpoint_manager(os.fspath(tmp_path / "ckpts"))
  from orbax.checkpoint._src.path import atomicity  # pylint: disable=g-import-not-at-top

  model = _mlp(seed=1)
  x = _mlp_input()
  _, params_v1 = pz.unbind_params(model, freeze=True)
  manager.save(1, args=ocp.args.StandardSave(params_v1))
  manager.wait_until_finished()
  assert manager.all_steps() == [1]

  # A second save whose data gets written but whose commit fails, as when
  # the process dies mid-save.
  params_v2 = pz.unbind_params(_mlp(seed=5), freeze=True)[1]

  async def failing_finalize(self, *args, **kwargs):
    raise OSError("simulated crash while saving")

  for cls_name in ("AtomicRenameTemporaryPath", "CommitFileTemporaryPath"):
    if hasattr(atomicity, cls_name):
      monkeypatch.setattr(
          getattr(atomicity, cls_name), "finalize", failing_finalize
      )
  with pytest.raises(Exception) as excinfo:
    manager.save(2, args=ocp.args.StandardSave(params_v2))
    manager.wait_until_finished()
  monkeypatch.undo()
  chain = []
  err: BaseException | None = excinfo.value
  while err is not None:
    chain.append(str(err))
    err = err.__cause__ or err.__context__
  assert any("simulated crash" in msg for msg in chain), chain
  # The step-2 data was written to disk but never committed.
  leftovers = [p.name for p in (tmp_path / "ckpts").iterdir()]
  assert "2" not in leftovers
  assert any(name.startswith("2.") for name in leftovers), leftovers

  # A new manager (as after a restart) still sees only the complete step.
  _, reopened = _checkpoint_manager(os.fspath(tmp_path / "ckpts"))
  assert reopened.latest_step() == 1
  fresh_unbound, fresh_params = pz.unbind_params(_mlp(seed=9), freeze=True)
  restored = reopened.restore(1, args=ocp.args.StandardRestore(fresh_params))
  restored_model = pz.bind_variables(fresh_unbound, restored)
  np.testing.assert_array_equal(
      _np(restored_model(x), "batch", "features"),
      _np(model(x), "batch", "features"),
  )


# ---------------------------------------------------------------------------
# Loading pretrained models: a Gemma Flax checkpoint restored with orbax


def test_loading_gemma_from_an_orbax_checkpoint(tmp_path, monkeypatch):
  ocp = pytest.importorskip("orbax.checkpoint")
  from penzai.models.transformer.variants import gemma  # pylint: disable=g-import-not-at-top

  # A tiny stand-in for the "gemma_2b" preset (the real one is 2B params).
  emb, proj, hidden, vocab = 8, 4, 8, VOCAB
  monkeypatch.setattr(gemma, "_GEMMA_PRESETS", {
      "gemma_2b": dict(num_decoder_blocks=1, vocab_size=vocab, num_kv_heads=1,
                       query_head_multiplier=2, embedding_dim=emb,
                       projection_dim=proj, mlp_hidden_dim=hidden),
  })
  rng = np.random.RandomState(0)

  def w(*shape):
    return (rng.randn(*shape) * 0.3).astype(np.float32)

  pre = "transformer/layer_0/"
  gating = (
      w(2, hidden, emb) if gemma._NEEDS_GATING_TRANSPOSE["gemma_2b"]
      else w(2, emb, hidden)
  )
  flax_params = {
      "transformer/embedder": {"input_embedding": w(vocab, emb)},
      "transformer/final_norm": {"scale": w(emb)},
      pre + "pre_attention_norm": {"scale": w(emb)},
      pre + "pre_ffw_norm": {"scale": w(emb)},
      pre + "mlp/gating_einsum": {"w": gating},
      pre + "mlp/linear": {"w": w(hidden, emb)},
      pre + "attn/q_einsum": {"w": w(2, emb, proj)},
      pre + "attn/kv_einsum": {"w": w(2, 1, emb, proj)},
      pre + "attn/attn_vec_einsum": {"w": w(2, proj, emb)},
  }
  ckpt_path = os.fspath(tmp_path / "gemma")
  checkpointer = ocp.PyTreeCheckpointer()
  checkpointer.save(ckpt_path, flax_params)
  flax_params_dict = checkpointer.restore(ckpt_path)
  model = gemma.gemma_from_pretrained_checkpoint(
      flax_params_dict, preset_name="gemma_2b"
  )
  direct = gemma.gemma_from_pretrained_checkpoint(
      flax_params, preset_name="gemma_2b"
  )
  np.testing.assert_allclose(
      _logits(model, _tokens()), _logits(direct, _tokens()), rtol=1e-6
  )
