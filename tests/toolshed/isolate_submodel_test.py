"""Tests for penzai.toolshed.isolate_submodel."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import pz
from penzai.models import simple_mlp
from penzai.toolshed import isolate_submodel


@pz.pytree_dataclass
class _Twice(pz.nn.Layer):
  body: pz.nn.Layer

  def __call__(self, x: Any, /, **side_inputs: Any) -> Any:
    return self.body(self.body(x, **side_inputs), **side_inputs)


@pz.pytree_dataclass
class _Skip(pz.nn.Layer):
  body: pz.nn.Layer

  def __call__(self, x: Any, /, **side_inputs: Any) -> Any:
    return x


@pz.pytree_dataclass
class _Counter(pz.nn.Layer):
  count: pz.StateVariable[Any]

  def __call__(self, x: Any, /, **side_inputs: Any) -> Any:
    self.count.value = self.count.value + 1
    return x * 2.0


def _mlp():
  return simple_mlp.MLP.from_config(
      name="mlp", init_base_rng=jax.random.key(0), feature_sizes=[3, 4, 2]
  )


def _x():
  return pz.nx.wrap(
      jnp.linspace(-1, 1, 6, dtype=jnp.float32).reshape(2, 3),
      "batch", "features",
  )


def _np(arr, *names):
  return np.asarray(arr.unwrap(*names))


def test_extracts_stateless_linear_with_its_input_and_output():
  model = _mlp()
  x = _x()
  iso = isolate_submodel.call_and_extract_submodel(
      pz.select(model).at_instances_of(pz.nn.Linear).pick_nth_selected(1), x
  )
  assert isinstance(iso, isolate_submodel.IsolatedSubmodel)
  assert iso.initial_var_values == ()
  assert iso.final_var_values == ()
  assert isinstance(iso.submodel, pz.nn.Linear)
  assert isinstance(iso.submodel.weights, pz.ParameterValue)
  # The saved argument is the hidden activation: relu(first affine(x)).
  hidden = model.sublayers[1](model.sublayers[0](x))
  np.testing.assert_allclose(
      _np(iso.saved_arg, "batch", "features"),
      _np(hidden, "batch", "features"),
  )
  w = _np(model.sublayers[2].sublayers[0].weights.value, "features",
          "features_out")
  np.testing.assert_allclose(
      _np(iso.saved_output, "batch", "features_out"),
      _np(hidden, "batch", "features") @ w,
      rtol=1e-6,
  )
  np.testing.assert_allclose(
      _np(iso.submodel(iso.saved_arg), "batch", "features_out"),
      _np(iso.saved_output, "batch", "features_out"),
  )


def test_state_is_captured_and_replayable():
  counter = pz.StateVariable(jnp.asarray(5), label="counter")
  model = pz.nn.Sequential([
      pz.nn.Elementwise(jnp.tanh),
      pz.nn.Sequential([
          _Counter(count=counter),
          pz.nn.StochasticDropout(drop_rate=0.5),
      ]),
  ])
  stream = pz.RandomStream.from_base_key(jax.random.key(3))
  x = _x()
  iso = isolate_submodel.call_and_extract_submodel(
      pz.select(model).at(lambda m: m.sublayers[1]), x, random_stream=stream
  )
  # Real state advanced exactly once.
  assert int(counter.value) == 6
  assert int(stream.offset.value) == 1
  # Variables were replaced by slots; their states recorded before/after.
  assert isinstance(
      iso.saved_side_inputs["random_stream"].offset, pz.StateVariableSlot
  )
  assert isinstance(iso.submodel.sublayers[0].count, pz.StateVariableSlot)
  assert isinstance(iso.initial_var_values, tuple)
  initial = {v.label: int(v.value) for v in iso.initial_var_values}
  final = {v.label: int(v.value) for v in iso.final_var_values}
  assert initial == {"counter": 5, "random_stream_offset": 0}
  assert final == {"counter": 6, "random_stream_offset": 1}
  out, new_vars = iso.submodel.stateless_call(
      iso.initial_var_values, iso.saved_arg, **iso.saved_side_inputs
  )
  np.testing.assert_allclose(
      _np(out, "batch", "features"), _np(iso.saved_output, "batch", "features")
  )
  assert [int(v.value) for v in new_vars] == [
      int(v.value) for v in iso.final_var_values
  ]
  # Output of dropout on 2 * tanh(x): kept entries are scaled by 2.
  expected = 2.0 * np.tanh(_np(x, "batch", "features")) / 0.5
  got = _np(iso.saved_output, "batch", "features")
  kept = got != 0
  np.testing.assert_allclose(got[kept], expected[kept], rtol=1e-6)


def test_multiple_calls_give_a_list_and_no_call_gives_empty_list():
  layer = pz.nn.Elementwise(jnp.tanh)
  x = _x()
  twice = _Twice(body=layer)
  calls = isolate_submodel.call_and_extract_submodel(
      pz.select(twice).at(lambda m: m.body), x
  )
  assert isinstance(calls, list) and len(calls) == 2
  np.testing.assert_allclose(
      _np(calls[1].saved_arg, "batch", "features"),
      np.tanh(_np(x, "batch", "features")),
      rtol=1e-6,
  )
  never = isolate_submodel.call_and_extract_submodel(
      pz.select(_Skip(body=layer)).at(lambda m: m.body), x
  )
  assert never == []


def test_selection_errors():
  model = _mlp()
  x = _x()
  with pytest.raises(
      ValueError, match="submodel_selection must contain exactly one sublayer."
  ):
    isolate_submodel.call_and_extract_submodel(
        pz.select(model).at_instances_of(pz.nn.Linear), x
    )
  with pytest.raises(ValueError, match="submodel_selection must select a layer."):
    isolate_submodel.call_and_extract_submodel(
        pz.select(model)
        .at_instances_of(pz.Parameter)
        .pick_nth_selected(0),
        x,
    )
  with pytest.raises(ValueError, match="The tree that submodule_selection"):
    isolate_submodel.call_and_extract_submodel(
        pz.select([model]).at_instances_of(simple_mlp.MLP), x
    )


def test_capturer_records_calls():
  saved = pz.StateVariable([])
  capturer = isolate_submodel.IsolationCapturer(
      saved_calls=saved, wrapped=pz.nn.Elementwise(jnp.tanh)
  )
  x = _x()
  out = capturer(x)
  np.testing.assert_allclose(
      _np(out, "batch", "features"), np.tanh(_np(x, "batch", "features")),
      rtol=1e-6,
  )
  capturer(out)
  assert len(saved.value) == 2


def test_mutable_parameters_outside_the_submodel_are_rejected():
  layer = pz.nn.Elementwise(jnp.tanh)
  model = pz.nn.Sequential([layer])
  param = pz.Parameter(value=jnp.zeros(()), label="extra")
  with pytest.raises(
      ValueError,
      match="Expected all variables to be either Parameters or StateVariables,"
      " but got",
  ):
    isolate_submodel.call_and_extract_submodel(
        pz.select(model).at(lambda m: m.sublayers[0]), _x(), extra=param
    )
