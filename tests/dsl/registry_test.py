"""User-registered layer types and activations."""

from typing import Literal

import jax
import pytest

from penzai import dsl, pz


class ScaleSpec(dsl.LayerNode):
  """Multiplies by a constant and renames an axis (test-only user layer)."""

  type: Literal["TestScale"] = "TestScale"
  factor: float
  axis: str


def _build(spec, name, init_base_rng):
  return pz.nn.ConstantRescale(by=spec.factor)


def _rule(spec, x, side_inputs):
  if spec.axis not in x.named_shape:
    raise dsl.ShapeError(f"needs axis {spec.axis!r}", kind="axis_missing", field="axis")
  return x


@pytest.fixture
def registered():
  dsl.register_layer("TestScale", ScaleSpec, _build, _rule)
  yield
  dsl.unregister_layer("TestScale")


def test_user_layer_loads_checks_and_builds(registered):
  spec = dsl.loads(
      "name: m\ninput: {named_shape: {x: 3}}\nmodel:\n"
      "  type: Sequential\n  layers:\n    - {type: TestScale, factor: 2.0, axis: x}\n", "u.yaml")
  assert isinstance(spec.model.layers[0], ScaleSpec)
  dsl.check(spec, deep=True)
  model = dsl.build(spec)
  assert model(pz.nx.ones({"x": 3})).data_array.tolist() == [2.0, 2.0, 2.0]


def test_user_rule_errors_are_positioned(registered):
  spec = dsl.loads("name: m\ninput: {named_shape: {x: 3}}\nmodel:\n  type: TestScale\n  factor: 2\n  axis: y\n", "u.yaml")
  with pytest.raises(dsl.SpecError) as info:
    dsl.check(spec)
  e = info.value.errors[0]
  assert (e.kind, e.line, e.column) == ("axis_missing", 6, 3)


def test_unregistered_type_is_unknown():
  with pytest.raises(dsl.SpecError, match="unknown layer type 'TestScale'"):
    dsl.loads("name: m\ninput: {named_shape: {x: 3}}\nmodel: {type: TestScale, factor: 1, axis: x}\n")


def test_registration_is_validated():
  with pytest.raises(ValueError, match="must declare"):
    dsl.register_layer("Other", ScaleSpec, _build, _rule)
  with pytest.raises(ValueError, match="built-in"):
    dsl.register_layer("Linear", ScaleSpec, _build, _rule)


def test_register_activation():
  dsl.register_activation("test_square", lambda x: x * x)
  spec = dsl.loads("name: m\ninput: {named_shape: {x: 2}}\nmodel: {type: Elementwise, fn: test_square}\n")
  out = dsl.build(spec)(pz.nx.wrap(jax.numpy.array([2.0, 3.0])).tag("x"))
  assert out.data_array.tolist() == [4.0, 9.0]
