"""Seed conformance: the snippets of the "Changes in the V2 API" guide.

Every runnable snippet of seeds 000/001 is reproduced here as a user would
write it (same imports, same calls), with tiny shapes substituted for the
guide's placeholders (`...`, `input_features`, `model`, `SomeLayer`).
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.core import named_axes
from penzai.core import struct
from penzai.models import simple_mlp
from penzai.nn import linear_and_affine
from penzai.nn import parameters


# --- "Eager parameter initialization and sharing-by-default" (new side of
# the first diff), written exactly as a model implementer would.


@pz.pytree_dataclass(has_implicitly_inherited_fields=True)
class MLP(pz.nn.Sequential):
  """Sequence of Affine layers."""

  @classmethod
  def from_config(
      cls,
      name: str,
      init_base_rng: jax.Array | None,
      feature_sizes: list[int],
      activation_fn: Callable[[jax.Array], jax.Array] = jax.nn.relu,
      feature_axis: str = "features",
  ) -> "MLP":
    assert len(feature_sizes) >= 2
    children: list[pz.nn.Layer] = []  # (annotation added for mypy)
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


# Second diff (the guide's `...` default for `initializer` is filled in).


@struct.pytree_dataclass
class EmbeddingTable(struct.Struct):
  embeddings: parameters.ParameterLike[named_axes.NamedArray]
  vocabulary_axis: str = dataclasses.field(metadata={"pytree_node": False})

  @classmethod
  def from_config(
      cls,
      name: str,
      init_base_rng: jax.Array | None,
      vocab_size: int,
      embedding_axes: dict[str, int],
      vocabulary_axis: str = "vocabulary",
      initializer: linear_and_affine.LinearOperatorWeightInitializer = (
          linear_and_affine.xavier_normal_initializer
      ),
      dtype: np.typing.DTypeLike = np.float32,
  ) -> "EmbeddingTable":
    if vocabulary_axis in embedding_axes:
      raise ValueError(
          f"`vocabulary_axis` {vocabulary_axis} should not appear in"
          f"`embedding_axes` {embedding_axes}"
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


def _features(batch: int, size: int, seed: int = 0) -> pz.nx.NamedArray:
  data = np.random.default_rng(seed).normal(size=(batch, size))
  return pz.nx.wrap(jnp.asarray(data, jnp.float32)).tag("batch", "features")


def _reference_affine(affine: pz.nn.Affine, x: np.ndarray) -> np.ndarray:
  """Hand-written affine map for an `Affine` built on a shared axis name."""
  linear: Any = affine.sublayers[0]
  bias: Any = affine.sublayers[-1]
  w = np.asarray(linear.weights.value.unwrap("features", "features_out"))
  b = np.asarray(bias.bias.value.unwrap("features"))
  return x @ w + b


class TestEagerInitialization:
  """The custom `MLP` / `EmbeddingTable` builders from the diffs."""

  def test_custom_mlp_builds_named_parameters_eagerly(self):
    mlp = MLP.from_config(
        name="mlp", init_base_rng=jax.random.key(1), feature_sizes=[2, 4, 2]
    )
    assert [type(l) for l in mlp.sublayers] == [
        pz.nn.Affine,
        pz.nn.Elementwise,
        pz.nn.Affine,
    ]
    _, params = pz.unbind_params(mlp)
    assert [p.label for p in params] == [
        "mlp/Affine_0/Linear.weights",
        "mlp/Affine_0/AddBias.bias",
        "mlp/Affine_1/Linear.weights",
        "mlp/Affine_1/AddBias.bias",
    ]
    assert all(isinstance(p, pz.Parameter) for p in params)

  def test_custom_mlp_computes_the_affine_stack(self):
    mlp = MLP.from_config(
        name="mlp", init_base_rng=jax.random.key(1), feature_sizes=[2, 4, 2]
    )
    x = _features(2, 2)
    out = mlp(x)
    assert out.named_shape == {"batch": 2, "features": 2}
    h = np.maximum(_reference_affine(mlp.sublayers[0], x.unwrap("batch", "features")), 0)
    expected = _reference_affine(mlp.sublayers[2], h)
    np.testing.assert_allclose(
        out.unwrap("batch", "features"), expected, rtol=1e-5, atol=1e-6
    )

  def test_custom_mlp_matches_library_mlp(self):
    """Same names and key give the same values as `simple_mlp.MLP`."""
    ours = MLP.from_config(
        name="mlp", init_base_rng=jax.random.key(3), feature_sizes=[2, 4, 2]
    )
    lib = simple_mlp.MLP.from_config(
        name="mlp", init_base_rng=jax.random.key(3), feature_sizes=[2, 4, 2]
    )
    _, ours_vals = pz.unbind_params(ours, freeze=True)
    _, lib_vals = pz.unbind_params(lib, freeze=True)
    assert [v.label for v in ours_vals] == [v.label for v in lib_vals]
    for a, b in zip(ours_vals, lib_vals):
      np.testing.assert_array_equal(
          a.value.canonicalize().data_array, b.value.canonicalize().data_array
      )

  def test_custom_embedding_table(self):
    table = EmbeddingTable.from_config(
        name="embedder",
        init_base_rng=jax.random.key(0),
        vocab_size=7,
        embedding_axes={"embedding": 4},
    )
    assert isinstance(table.embeddings, pz.Parameter)
    assert table.embeddings.label == "embedder.embeddings"
    assert table.embeddings.value.named_shape == {"vocabulary": 7, "embedding": 4}
    assert table.vocabulary_axis == "vocabulary"
    # Static field: only the parameter is a leaf.
    assert jax.tree_util.tree_leaves(table) == [table.embeddings]
    # Usable with the library lookup layer (a duck-typed table).
    tokens = pz.nx.wrap(jnp.array([1, 6])).tag("seq")
    emb = pz.nn.EmbeddingLookup(table)(tokens)
    np.testing.assert_array_equal(
        emb.unwrap("seq", "embedding"),
        table.embeddings.value.unwrap("vocabulary", "embedding")[
            jnp.array([1, 6])
        ],
    )

  def test_custom_embedding_table_errors_and_slots(self):
    with pytest.raises(ValueError, match="vocabulary_axis"):
      EmbeddingTable.from_config(
          name="e",
          init_base_rng=None,
          vocab_size=3,
          embedding_axes={"vocabulary": 2},
      )
    table = EmbeddingTable.from_config(
        name="e", init_base_rng=None, vocab_size=3, embedding_axes={"d": 2}
    )
    assert table.embeddings == pz.ParameterSlot("e.embeddings")

  def test_same_layer_twice_shares_its_parameters(self):
    layer = pz.nn.Linear.from_config(
        name="shared",
        init_base_rng=jax.random.key(0),
        input_axes={"features": 2},
        output_axes={"hidden": 2},
    )
    rename = pz.nn.RenameAxes(old="hidden", new="features")
    model = pz.nn.Sequential([layer, rename, layer, rename])
    _, params = pz.unbind_params(model)
    assert len(params) == 1
    assert model.sublayers[0].weights is model.sublayers[2].weights
    # Updating through one reference is seen by every use.
    model.sublayers[0].weights.value = pz.nx.wrap(jnp.eye(2)).tag(
        "features", "hidden"
    )
    x = _features(3, 2)
    np.testing.assert_allclose(
        model(x).unwrap("batch", "features"), x.unwrap("batch", "features")
    )


# --- "Simpler side inputs as keyword arguments"


@pz.pytree_dataclass
class RecordSideInputs(pz.nn.Layer):
  seen: pz.StateVariable[Any]

  def __call__(self, argument: Any, /, **side_inputs) -> Any:
    self.seen.value = {k: jnp.asarray(v) for k, v in side_inputs.items()}
    return argument


class TestSideInputs:

  def test_layer_call_signature_is_positional_argument_plus_kwargs(self):
    import inspect

    params = inspect.signature(pz.nn.Layer.__call__).parameters
    kinds = [p.kind for p in params.values()]
    assert kinds == [
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.VAR_KEYWORD,
    ]

  def test_layer_is_abstract_until_call_is_defined(self):
    @pz.pytree_dataclass
    class NoCall(pz.nn.Layer):  # pylint: disable=abstract-method
      pass

    with pytest.raises(TypeError, match="abstract"):
      NoCall()  # type: ignore[abstract]

  def test_sequential_forwards_all_side_inputs_and_layers_ignore_unknown(self):
    recorder = RecordSideInputs(pz.StateVariable(value={}))
    model = pz.nn.Sequential([
        pz.nn.Elementwise(jnp.tanh),
        recorder,
        pz.nn.Softmax("features"),
    ])
    x = _features(2, 3)
    out = model(x, foo=1, bar=2.0)
    assert set(recorder.seen.value) == {"foo", "bar"}
    np.testing.assert_allclose(
        out.unwrap("batch", "features"),
        jax.nn.softmax(jnp.tanh(x.unwrap("batch", "features")), axis=-1),
        rtol=1e-6,
    )


# --- "Migration Guide": imports and model initialization


def test_new_v2_imports():
  # pylint: disable=g-import-not-at-top,reimported,import-outside-toplevel
  from penzai import pz as pz2
  from penzai.models import simple_mlp as simple_mlp2
  import penzai.toolshed

  assert pz2 is pz
  assert simple_mlp2 is simple_mlp
  assert penzai.toolshed.__name__ == "penzai.toolshed"


def test_model_initialization_new_style():
  mlp = simple_mlp.MLP.from_config(
      name="mlp",
      init_base_rng=jax.random.key(10),
      feature_sizes=[2, 4, 4, 2],  # guide: [2, 32, 32, 2]
  )
  pz.nn.assert_no_parameter_slots(mlp)
  out = mlp(_features(2, 2))
  assert out.named_shape == {"batch": 2, "features": 2}
  # Deterministic: same key, same parameters.
  again = simple_mlp.MLP.from_config(
      name="mlp",
      init_base_rng=jax.random.key(10),
      feature_sizes=[2, 4, 4, 2],  # guide: [2, 32, 32, 2]
  )
  np.testing.assert_array_equal(
      again(_features(2, 2)).unwrap("batch", "features"),
      out.unwrap("batch", "features"),
  )


def test_model_without_initialization_has_placeholders():
  mlp = simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=None, feature_sizes=[2, 4, 2]
  )
  slots = pz.select(mlp).at_instances_of(pz.ParameterSlot).get_sequence()
  assert [s.label for s in slots] == [
      "mlp/Affine_0/Linear.weights",
      "mlp/Affine_0/AddBias.bias",
      "mlp/Affine_1/Linear.weights",
      "mlp/Affine_1/AddBias.bias",
  ]
  with pytest.raises(ValueError, match="Unexpected ParameterSlots"):
    pz.nn.assert_no_parameter_slots(mlp)
  with pytest.raises(pz.UnboundVariableError):
    mlp(_features(2, 2))
  # Binding initialized parameters fills the placeholders.
  _, params = pz.unbind_params(
      simple_mlp.MLP.from_config(
          name="mlp", init_base_rng=jax.random.key(0), feature_sizes=[2, 4, 2]
      )
  )
  bound = pz.bind_variables(mlp, params)
  assert bound(_features(2, 2)).named_shape == {"batch": 2, "features": 2}


# --- "Mutable state and random numbers"


@pz.pytree_dataclass
class StateIncrementLayer(pz.nn.Layer):
  state: pz.StateVariable[int]

  def __call__(self, x, **unused_side_inputs):
    # Mutate the `value` attribute of the variable:
    self.state.value = self.state.value + 1
    return x


def test_state_increment_layer():
  inc_layer = StateIncrementLayer(pz.StateVariable(value=0))
  my_model = pz.nn.Sequential([
      pz.nn.Elementwise(jnp.negative), inc_layer, pz.nn.Elementwise(jnp.exp)
  ])

  x = _features(2, 2)
  _ = my_model(x)
  assert inc_layer.state.value == 1
  _ = my_model(x, some_side_input=3)
  assert inc_layer.state.value == 2
  # The struct itself is immutable; only the variable changed.
  with pytest.raises(dataclasses.FrozenInstanceError):
    inc_layer.state = pz.StateVariable(value=0)  # pytype: disable=attribute-error


def test_dropout_mlp_with_random_stream_side_input():
  # Build a model that needs random numbers.
  mlp = simple_mlp.DropoutMLP.from_config(
      name="mlp",
      init_base_rng=jax.random.key(0),
      feature_sizes=[2, 4, 4, 4],  # guide: [8, 16, 32, 32]
      drop_rate=0.2,
  )
  input_features = _features(2, 2)
  # Call with an RNG side input. The guide spells the keyword `rng=`, but
  # `StochasticDropout` reads `random_stream` (its `random_stream_input_name`
  # default, nn.md §8), which is also what the "Common Tasks" guide uses.
  stream = pz.RandomStream.from_base_key(jax.random.key(0))
  result = mlp(input_features, random_stream=stream)
  assert result.named_shape == {"batch": 2, "features": 4}
  assert stream.offset.value == 2  # one key per dropout layer
  # Same stream seed => same result; a different seed => different dropout.
  again = mlp(
      input_features,
      random_stream=pz.RandomStream.from_base_key(jax.random.key(0)),
  )
  np.testing.assert_array_equal(
      again.unwrap("batch", "features"), result.unwrap("batch", "features")
  )
  other = mlp(
      input_features,
      random_stream=pz.RandomStream.from_base_key(jax.random.key(1)),
  )
  assert not np.array_equal(
      other.unwrap("batch", "features"), result.unwrap("batch", "features")
  )


def test_dropout_mlp_with_guide_spelling_rng_reports_missing_stream():
  """The guide's literal `rng=` keyword is not the stream's side-input name."""
  mlp = simple_mlp.DropoutMLP.from_config(
      name="mlp",
      init_base_rng=jax.random.key(0),
      feature_sizes=[2, 4, 2],
      drop_rate=0.2,
  )
  with pytest.raises(KeyError, match="random_stream"):
    mlp(
        _features(2, 2),
        rng=pz.RandomStream.from_base_key(jax.random.key(0)),
    )


# --- "Capturing intermediate values"


@pz.pytree_dataclass
class AppendIntermediate(pz.nn.Layer):
  saved: pz.StateVariable[list[Any]]

  def __call__(self, x):
    self.saved.value = self.saved.value + [x]
    return x


def _small_model():
  return simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(2), feature_sizes=[2, 4, 4, 2]
  )


class TestCapturingIntermediates:

  def test_append_intermediate_after_each_affine(self):
    model = _small_model()
    inputs = _features(2, 2)
    SomeLayer = pz.nn.Affine  # pylint: disable=invalid-name

    intermediates_cell = pz.StateVariable([])
    model_saving_intermediates = (
        pz.select(model)
        .at_instances_of(SomeLayer)
        .insert_after(AppendIntermediate(intermediates_cell))
    )

    _ = model_saving_intermediates(inputs)

    intermediates = intermediates_cell.value
    assert len(intermediates) == 3
    # The saved values are the outputs of the successive Affine layers.
    expected = model.sublayers[0](inputs)
    np.testing.assert_allclose(
        intermediates[0].unwrap("batch", "features"),
        expected.unwrap("batch", "features"),
    )
    np.testing.assert_allclose(
        intermediates[-1].unwrap("batch", "features"),
        model(inputs).unwrap("batch", "features"),
        rtol=1e-6,
    )
    # The original model is untouched but shares its parameters.
    assert len(model.sublayers) == 5
    assert len(model_saving_intermediates.sublayers) == 8
    assert (
        model_saving_intermediates.sublayers[0].sublayers[0].weights
        is model.sublayers[0].sublayers[0].weights
    )

  def test_builtin_save_intermediate(self):
    # New
    from penzai.toolshed import save_intermediates  # pylint: disable=g-import-not-at-top

    model = _small_model()
    inputs = _features(2, 2)
    SomeLayer = pz.nn.Elementwise  # pylint: disable=invalid-name

    model_saving_intermediates = (
        pz.select(model)
        .at_instances_of(SomeLayer)
        .insert_after(save_intermediates.SaveIntermediate())
    )

    _ = model_saving_intermediates(inputs)

    # The guide reads `saver.cell.value`; the field is named `saved`
    # (toolshed.md §1), as in upstream penzai.
    intermediates = [
        saver.saved.value for saver in (
            pz.select(model_saving_intermediates)
            .at_instances_of(save_intermediates.SaveIntermediate)
            .get_sequence()
        )
    ]
    assert len(intermediates) == 2
    # `insert_after` inserts the *same* saver object at every match, so both
    # copies share one StateVariable and hold the last value written: the
    # output of the second Elementwise (relu) layer.
    savers = (
        pz.select(model_saving_intermediates)
        .at_instances_of(save_intermediates.SaveIntermediate)
        .get_sequence()
    )
    assert savers[0].saved is savers[1].saved
    h = model.sublayers[0](inputs)
    for layer in model.sublayers[1:4]:
      h = layer(h)
    for value in intermediates:
      np.testing.assert_allclose(
          value.unwrap("batch", "features"), h.unwrap("batch", "features")
      )
    assert bool(jnp.all(intermediates[0].unwrap("batch", "features") >= 0))


# --- "JIT compilation and functional transformations"


def test_variable_jit_is_a_drop_in_replacement_for_jit():
  inc_layer = StateIncrementLayer(pz.StateVariable(value=0))
  model = pz.nn.Sequential([_small_model(), inc_layer])
  x = _features(2, 2)

  @pz.variable_jit
  def run(model, x):
    return model(x)

  out = run(model, x)
  np.testing.assert_allclose(
      out.unwrap("batch", "features"),
      model.sublayers[0](x).unwrap("batch", "features"),
      rtol=1e-5,
  )
  # The state mutation inside the jitted function reached the original.
  assert inc_layer.state.value == 1
  run(model, x)
  assert inc_layer.state.value == 2
  # Plain jax.jit refuses the variables.
  with pytest.raises(TypeError):
    jax.jit(lambda m, x: m(x))(model, x)


def test_variable_jit_accepts_variables_in_any_argument():
  counter = pz.StateVariable(value=0, label="counter")
  scale = pz.Parameter(value=jnp.array(2.0), label="scale")

  @pz.variable_jit
  def step(x, state, *, params, times):
    state["counter"].value = state["counter"].value + times
    return x * params[0].value

  step_static = pz.variable_jit(
      lambda x, state, *, params, times: step(
          x, state, params=params, times=times
      ),
      static_argnames="times",
  )
  out = step(jnp.ones(2), {"counter": counter}, params=[scale], times=3)
  np.testing.assert_array_equal(out, np.array([2.0, 2.0]))
  assert counter.value == 3
  step_static(jnp.ones(2), {"counter": counter}, params=[scale], times=4)
  assert counter.value == 7
  # Returning a variable out of the jitted function is refused.
  with pytest.raises(ValueError, match="Returning a variable"):
    pz.variable_jit(lambda v: v)(counter)


def test_unbind_freeze_and_call_functionally():
  inc_layer = StateIncrementLayer(pz.StateVariable(value=0, label="counter"))
  model = pz.nn.Sequential([_small_model(), inc_layer])
  input = _features(2, 2)  # pylint: disable=redefined-builtin

  # Extract all variables:
  model_without_vars, all_vars = pz.unbind_variables(model)

  # Freeze cell states, obtaining a JAX PyTree of cell values
  frozen_vars = [var.freeze() for var in all_vars]
  assert all(isinstance(v, pz.AbstractVariableValue) for v in frozen_vars)

  # Call the model in a functional style and get updated states (safe to run
  # under jax.jit or any other function transformation). The guide names this
  # `call_with_local_vars`; the V2 layer method is `stateless_call`.
  output, new_vars = jax.jit(model_without_vars.stateless_call)(
      frozen_vars, input
  )
  np.testing.assert_allclose(
      output.unwrap("batch", "features"),
      model.sublayers[0](input).unwrap("batch", "features"),
      rtol=1e-5,
  )
  # The functional call did not touch the original variables.
  assert inc_layer.state.value == 0

  # (Optional) Update the original vars:
  for var, new_var in zip(all_vars, new_vars):
    var.value = new_var.value
  assert inc_layer.state.value == 1
  counter = [v for v in new_vars if v.label == "counter"][0]
  assert counter.value == 1


# --- "Loading pretrained transformers" (API shape only; no checkpoint here)


def test_pretrained_transformer_entry_points_exist():
  from penzai.models.transformer import model_parts  # pylint: disable=g-import-not-at-top
  from penzai.models.transformer import variants  # pylint: disable=g-import-not-at-top

  assert callable(variants.gemma.gemma_from_pretrained_checkpoint)
  assert issubclass(model_parts.TransformerFeedForward, pz.nn.Sequential)
  assert issubclass(model_parts.TransformerLM, pz.nn.Layer)
