"""Every example spec is validated, deep-checked, built and run."""

import pathlib

import jax
import pytest

from penzai import dsl, pz
from penzai.dsl import checker, sweeps

SPECS = pathlib.Path(__file__).resolve().parents[2] / "examples" / "specs"
MODEL_FILES = sorted(p for p in SPECS.glob("*.yaml") if not p.name.startswith("sweep"))


def test_expected_examples_exist():
  names = {p.stem for p in MODEL_FILES}
  assert {"mlp", "residual_mlp", "transformer_block", "tiny_llama", "tied_embedding"} <= names
  assert (SPECS / "sweep_mlp.yaml").exists()


@pytest.fixture
def fast_compile():
  """XLA optimizations off: compiling a whole model takes seconds instead of half a minute."""
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_example_validates_builds_and_runs(path, fast_compile):
  assert path.read_text().startswith("# yaml-language-server: $schema=../../schemas/model-spec.schema.json")
  spec = dsl.load(path)
  report = dsl.check(spec, deep=True)
  sizes = checker.symbol_sizes(spec, report)
  x, sides = checker.example_inputs(spec, sizes, abstract=False)

  @jax.jit
  def build_and_run(key, x, sides):
    # One compilation for initialization and the forward pass keeps this fast.
    model = pz.freeze_params(dsl.build(spec, init_base_rng=key))
    return model, model(x, **sides)

  model, out = build_and_run(jax.random.key(0), x, sides)
  expected = {k: sizes.get(v, v) if isinstance(v, str) else v for k, v in report.output.named_shape.items()}
  assert dict(out.named_shape) == expected
  assert str(out.dtype) == report.output.dtype
  values = {p.label: p.value for p in pz.select(model).at_instances_of(pz.ParameterValue).get_sequence()}
  assert sorted(values) == sorted(report.labels)
  n = sum(v.data_array.size for v in values.values())
  assert n == report.total_params


def test_sweep_example():
  variants = sweeps.load_sweep(SPECS / "sweep_mlp.yaml")
  assert len(variants) == 6
  assert [v.overrides["params.hidden"] for v in variants] == [16, 16, 32, 32, 64, 64]
  assert variants[1].spec.model.layers[1].fn == "gelu"
  assert variants[0].params == 8 * 16 + 16 + 16 * 2 + 2
