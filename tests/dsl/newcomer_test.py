"""`penzai.dsl` used the way a newcomer who has only read the design doc would.

Every spec under `newcomer_specs/` was written from `shared/design/dsl.md` and
the layer reference alone (field names = `from_config` / constructor keyword
arguments). The tests load, check, build and run them through the public API
and the `penzai` command line, and check that typical mistakes are reported as
`FILE:LINE:COL: key.path: message` with suggestions.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from penzai import dsl
from penzai import pz

SPECS = pathlib.Path(__file__).parent / "newcomer_specs"
ERRORS = SPECS / "errors"
PENZAI_CLI = pathlib.Path(sys.executable).parent / "penzai"


# ---------------------------------------------------------------- helpers


def _floats(named_shape: dict[str, int], seed: int = 0) -> pz.nx.NamedArray:
  """A float32 NamedArray with the given named shape."""
  data = jax.random.normal(jax.random.key(seed), tuple(named_shape.values()))
  return pz.nx.wrap(data).tag(*named_shape)


def _tokens(named_shape: dict[str, int], vocab: int) -> pz.nx.NamedArray:
  """An int32 token NamedArray with values in [0, vocab)."""
  data = jax.random.randint(
      jax.random.key(1), tuple(named_shape.values()), 0, vocab
  )
  return pz.nx.wrap(data.astype(jnp.int32)).tag(*named_shape)


def _positions(batch: int, seq: int) -> pz.nx.NamedArray:
  """token_positions side input {batch, seq}."""
  data = jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32), (batch, seq))
  return pz.nx.wrap(data).tag("batch", "seq")


def _labels(model: Any) -> set[str]:
  """Labels of every Parameter in a built model."""
  params = pz.select(model).at_instances_of(pz.Parameter).get_sequence()
  return {str(p.label) for p in params}


def _static_output(report: Any) -> dict[str, Any]:
  """The statically inferred output named shape of a check report."""
  return dict(report.output.named_shape)


def _concrete(static: dict[str, Any], sizes: dict[str, int]) -> dict[str, int]:
  """Replaces symbolic sizes (`B`, `S`, ...) by the sizes used at run time."""
  return {
      axis: (sizes[str(size)] if str(size) in sizes else size)
      for axis, size in static.items()
  }


def _load(name: str) -> Any:
  return dsl.load(str(SPECS / name))


def _spec_error(path: pathlib.Path) -> tuple[Any, str]:
  """Loads (and statically checks) a bad spec; returns the SpecError + text."""
  with pytest.raises(dsl.SpecError) as info:
    spec = dsl.load(str(path))
    dsl.check(spec)
  return info.value, str(info.value)


def _line(text: str, path: pathlib.Path, line: int, col: int | None = None) -> str:
  """The error line of `text` located at path:line[:col]."""
  prefix = f"{path}:{line}:" + (f"{col}:" if col is not None else "")
  for entry in text.splitlines():
    if entry.startswith(prefix):
      return entry
  raise AssertionError(f"no error at {prefix!r} in:\n{text}")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
  return subprocess.run(
      [str(PENZAI_CLI), *args],
      capture_output=True,
      text=True,
      timeout=300,
      env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
  )


# ----------------------------------------------- valid specs: build + run

B, S = 2, 3


class Case:
  """A valid spec, the input to run it on, and what must come out."""

  def __init__(
      self,
      file: str,
      make_input: Callable[[], Any],
      expected: dict[str, int],
      sizes: dict[str, int],
      side_inputs: Callable[[], dict[str, Any]] = dict,
      labels: set[str] | None = None,
  ):
    self.file = file
    self.make_input = make_input
    self.expected = expected
    self.sizes = sizes
    self.side_inputs = side_inputs
    self.labels = labels

  def __repr__(self) -> str:
    return self.file


def _rope_side() -> dict[str, Any]:
  return {"token_positions": _positions(B, S)}


CASES = [
    Case(
        "mlp.yaml",
        lambda: _floats({"batch": B, "features": 8}),
        {"batch": B, "features": 2},
        {"B": B},
        labels={
            "mlp/Affine_0/Linear.weights",
            "mlp/Affine_0/AddBias.bias",
            "mlp/Affine_2/Linear.weights",
            "mlp/Affine_2/AddBias.bias",
        },
    ),
    Case(
        "residual_mlp.yaml",
        lambda: _floats({"batch": B, "seq": S, "embedding": 8}),
        {"batch": B, "seq": S, "embedding": 8},
        {"B": B, "S": S},
        labels={
            "resmlp/block/norm/scale.weights",
            "resmlp/block/norm/shift.bias",
            "resmlp/block/up/Linear.weights",
            "resmlp/block/up/AddBias.bias",
            "resmlp/block/down/Linear.weights",
            "resmlp/block/down/AddBias.bias",
            "resmlp/final_norm/scale.weights",
        },
    ),
    Case(
        "named_group.yaml",
        lambda: _floats({"batch": B, "features": 4}),
        {"batch": B, "hidden": 6},
        {"B": B},
        labels={"net/encoder/proj.weights", "net/encoder/bias.bias"},
    ),
    Case(
        "branch_add.yaml",
        lambda: _floats({"batch": B, "features": 5}),
        {"batch": B, "features": 5},
        {"B": B},
        labels={
            "parallel/Sequential_1/left.weights",
            "parallel/Sequential_1/right.weights",
        },
    ),
    Case(
        "gated_mlp.yaml",
        lambda: _floats({"batch": B, "seq": S, "embedding": 8}),
        {"batch": B, "seq": S, "embedding": 8},
        {"B": B, "S": S},
        labels={
            "ffw/BranchAndMultiplyTogether_0/gate/gating_linear.weights",
            "ffw/BranchAndMultiplyTogether_0/value_linear.weights",
            "ffw/out_linear.weights",
        },
    ),
    Case(
        "repeat.yaml",
        lambda: _floats({"batch": B, "features": 4}),
        {"batch": B, "features": 4},
        {"B": B},
    ),
    Case(
        "repeat_stack.yaml",
        lambda: _floats({"batch": B, "features": 4}),
        {"batch": B, "features": 4},
        {"B": B},
    ),
    Case(
        "linear_options.yaml",
        lambda: _floats({"batch": B, "heads": 2, "features": 4}),
        {"batch": B, "heads": 2, "extra": 2, "features": 4, "copies": 2},
        {"B": B},
        labels={
            "lin/per_head.weights",
            "lin/bias.bias",
            "lin/mix/Linear.weights",
            "lin/mix/AddBias.bias",
        },
    ),
    Case(
        "rename_rescale.yaml",
        lambda: _floats({"batch": B, "features": 6}),
        {"examples": B, "features": 6},
        {"B": B},
        labels=set(),
    ),
    Case(
        "standardize.yaml",
        lambda: _floats({"batch": B, "seq": S, "embedding": 8}),
        {"batch": B, "seq": S, "embedding": 8},
        {"B": B, "S": S},
        labels={
            "norms/LayerNorm_2/scale.weights",
            "norms/LayerNorm_2/shift.bias",
            "norms/RMSLayerNorm_3/scale.weights",
        },
    ),
    Case(
        "tied_embedding.yaml",
        lambda: _tokens({"batch": B, "seq": S}, 13),
        {"batch": B, "seq": S, "vocabulary": 13},
        {"B": B, "S": S},
        labels={
            "lm/embedder.embeddings",
            "lm/hidden/Linear.weights",
            "lm/hidden/AddBias.bias",
        },
    ),
    Case(
        "ref_tying.yaml",
        lambda: _floats({"batch": B, "features": 4}),
        {"batch": B, "features": 4},
        {"B": B},
        labels={"tied/proj/Linear.weights", "tied/proj/AddBias.bias"},
    ),
    Case(
        "rope.yaml",
        lambda: _floats({"batch": B, "seq": S, "heads": 2, "projection": 8}),
        {"batch": B, "seq": S, "heads": 2, "projection": 8},
        {"B": B, "S": S},
        side_inputs=_rope_side,
        labels=set(),
    ),
    Case(
        "explicit_mask.yaml",
        lambda: _floats({"seq": S, "kv_seq": S}),
        {"seq": S, "kv_seq": S},
        {"S": S},
        side_inputs=lambda: {
            "attn_mask": pz.nx.wrap(jnp.tril(jnp.ones((S, S), bool))).tag(
                "seq", "kv_seq"
            )
        },
        labels=set(),
    ),
    Case(
        "mlp_node.yaml",
        lambda: _floats({"batch": B, "features": 8}),
        {"batch": B, "features": 4},
        {"B": B},
        labels={
            "mlp/Affine_0/Linear.weights",
            "mlp/Affine_0/AddBias.bias",
            "mlp/Affine_1/Linear.weights",
            "mlp/Affine_1/AddBias.bias",
        },
    ),
    Case(
        "params_arith.yaml",
        lambda: _floats({"batch": B, "features": 8}),
        {"batch": B, "out": 7},
        {"B": B},
        labels={"arith/Linear_0.weights", "arith/Linear_1.weights"},
    ),
    Case(
        "attention_block.yaml",
        lambda: _floats({"batch": B, "seq": S, "embedding": 16}),
        {"batch": B, "seq": S, "embedding": 16},
        {"B": B, "S": S},
        side_inputs=_rope_side,
    ),
    Case(
        "sliding_window_attention.yaml",
        lambda: _floats({"batch": B, "seq": S, "embedding": 8}),
        {"batch": B, "seq": S, "embedding": 8},
        {"B": B, "S": S},
        side_inputs=_rope_side,
    ),
    Case(
        "sweep_base.yaml",
        lambda: _floats({"batch": B, "features": 4}),
        {"batch": B, "features": 2},
        {"B": B},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_static_output_equals_built_model_output(case: Case):
  """check() infers what the real model (built by the user) returns."""
  spec = _load(case.file)
  report = dsl.check(spec)

  def build_and_call(key: jax.Array) -> Any:
    model = dsl.build(spec, init_base_rng=key)
    assert isinstance(model, pz.nn.Layer)
    return model(case.make_input(), **case.side_inputs())

  out = jax.eval_shape(build_and_call, jax.random.key(0))
  assert dict(out.named_shape) == case.expected
  assert not out.positional_shape
  assert _concrete(_static_output(report), case.sizes) == case.expected
  if case.labels is not None:
    skeleton = dsl.build(spec, init_base_rng=None)
    slots = pz.select(skeleton).at_instances_of(pz.ParameterSlot).get_sequence()
    assert {slot.label for slot in slots} == case.labels


RUN = ["mlp.yaml", "residual_mlp.yaml", "tied_embedding.yaml"]


@pytest.mark.parametrize("case", [c for c in CASES if c.file in RUN], ids=repr)
def test_built_model_runs_on_declared_input(case: Case):
  model = dsl.build(_load(case.file), init_base_rng=jax.random.key(0))
  out = model(case.make_input(), **case.side_inputs())
  assert dict(out.named_shape) == case.expected
  assert bool(jnp.all(jnp.isfinite(out.data_array.astype(jnp.float32))))
  if case.labels is not None:
    assert _labels(model) == case.labels


def test_build_without_rng_gives_parameter_slots():
  model = dsl.build(_load("mlp.yaml"), init_base_rng=None)
  slots = pz.select(model).at_instances_of(pz.ParameterSlot).get_sequence()
  assert {s.label for s in slots} == {
      "mlp/Affine_0/Linear.weights",
      "mlp/Affine_0/AddBias.bias",
      "mlp/Affine_2/Linear.weights",
      "mlp/Affine_2/AddBias.bias",
  }
  assert not pz.select(model).at_instances_of(pz.Parameter).get_sequence()


def test_same_key_builds_identical_parameters():
  spec = _load("mlp.yaml")
  a = dsl.build(spec, init_base_rng=jax.random.key(3))
  b = dsl.build(spec, init_base_rng=jax.random.key(3))
  c = dsl.build(spec, init_base_rng=jax.random.key(4))
  pa = {p.label: p.value for p in pz.select(a).at_instances_of(pz.Parameter).get_sequence()}
  pb = {p.label: p.value for p in pz.select(b).at_instances_of(pz.Parameter).get_sequence()}
  pc = {p.label: p.value for p in pz.select(c).at_instances_of(pz.Parameter).get_sequence()}
  w = "mlp/Affine_0/Linear.weights"
  np.testing.assert_array_equal(pa[w].data_array, pb[w].data_array)
  assert not np.array_equal(pa[w].data_array, pc[w].data_array)


def test_mlp_matches_hand_written_from_config():
  """The example doc's labels follow from Affine.from_config(name=...)."""
  spec = _load("mlp.yaml")
  key = jax.random.key(0)
  model = dsl.build(spec, init_base_rng=key)
  hand = pz.nn.Affine.from_config(
      name="mlp/Affine_0", init_base_rng=key,
      input_axes={"features": 8}, output_axes={"features": 32},
  )
  built = {p.label: p.value for p in pz.select(model).at_instances_of(pz.Parameter).get_sequence()}
  ref = {p.label: p.value for p in pz.select(hand).at_instances_of(pz.Parameter).get_sequence()}
  for label, value in ref.items():
    np.testing.assert_array_equal(
        built[label].untag(*value.named_shape).unwrap(),
        value.untag(*value.named_shape).unwrap(),
    )


def test_named_group_keeps_its_name():
  model = dsl.build(_load("named_group.yaml"), init_base_rng=jax.random.key(0))
  groups = pz.select(model).at_instances_of(pz.nn.NamedGroup).get_sequence()
  assert [g.name for g in groups] == ["encoder"]


def test_repeat_builds_independent_copies():
  model = dsl.build(_load("repeat.yaml"), init_base_rng=jax.random.key(0))
  labels = _labels(model)
  assert len(labels) == 6  # 3 x (weights, bias), all distinct
  weights = sorted(lbl for lbl in labels if lbl.endswith("Linear.weights"))
  assert all(lbl.startswith("deep/") for lbl in weights)


def test_repeat_stack_builds_a_layer_stack():
  model = dsl.build(_load("repeat_stack.yaml"), init_base_rng=jax.random.key(0))
  stacks = pz.select(model).at_instances_of(pz.nn.LayerStack).get_sequence()
  assert len(stacks) == 1
  assert stacks[0].stack_axis_size == 3
  params = pz.select(model).at_instances_of(pz.Parameter).get_sequence()
  assert len(params) == 2
  for p in params:
    assert p.value.named_shape[stacks[0].stack_axis] == 3


def test_rename_softmax_cast_numbers():
  model = dsl.build(_load("rename_rescale.yaml"), init_base_rng=jax.random.key(0))
  x = _floats({"batch": B, "features": 6})
  out = model(x)
  assert out.dtype == jnp.bfloat16
  probs = out.astype(jnp.float32).unwrap("examples", "features")
  np.testing.assert_allclose(probs.sum(axis=-1), np.ones(B), rtol=1e-2)
  ref = jax.nn.softmax(x.unwrap("batch", "features") * 0.5, axis=-1)
  np.testing.assert_allclose(probs, ref, atol=1e-2)


def test_dropout_node_drops_with_random_stream():
  model = dsl.build(_load("dropout.yaml"), init_base_rng=jax.random.key(0))
  drops = pz.select(model).at_instances_of(pz.nn.StochasticDropout).get_sequence()
  assert len(drops) == 1
  assert drops[0].drop_rate == 0.25
  assert tuple(drops[0].share_across_axes) == ("batch",)
  stream = pz.RandomStream.from_base_key(jax.random.key(5))
  out = model(_floats({"batch": B, "features": 8}), random_stream=stream)
  zeros = out.untag("batch", "features").unwrap() == 0
  # shared across batch: a feature is dropped for every example or none.
  assert bool(jnp.all(zeros[0] == zeros[1]))


def test_tied_embedding_shares_one_table():
  model = dsl.build(_load("tied_embedding.yaml"), init_base_rng=jax.random.key(0))
  lookup = pz.select(model).at_instances_of(pz.nn.EmbeddingLookup).get_sequence()
  decode = pz.select(model).at_instances_of(pz.nn.EmbeddingDecode).get_sequence()
  assert len(lookup) == len(decode) == 1
  assert lookup[0].table.embeddings is decode[0].table.embeddings
  assert dict(lookup[0].table.embeddings.value.named_shape) == {
      "vocabulary": 13, "embedding": 8}


def test_ref_reuses_the_same_layer_object():
  model = dsl.build(_load("ref_tying.yaml"), init_base_rng=jax.random.key(0))
  assert model.sublayers[0] is model.sublayers[2]
  params = pz.select(model).at_instances_of(pz.Parameter).get_sequence()
  assert len(params) == 4 and len({id(p) for p in params}) == 2


def test_explicit_mask_hides_future():
  model = dsl.build(_load("explicit_mask.yaml"), init_base_rng=None)
  mask = pz.nx.wrap(jnp.tril(jnp.ones((S, S), bool))).tag("seq", "kv_seq")
  out = model(_floats({"seq": S, "kv_seq": S}), attn_mask=mask)
  probs = out.untag("seq", "kv_seq").unwrap()
  np.testing.assert_allclose(jnp.triu(probs, 1), 0.0)


def test_attention_block_labels():
  model = dsl.build(_load("attention_block.yaml"), init_base_rng=None)
  slots = pz.select(model).at_instances_of(pz.ParameterSlot).get_sequence()
  labels = {slot.label for slot in slots}
  for short in ["query", "key", "value", "output"]:
    matching = [lbl for lbl in labels if lbl.endswith(f"/{short}.weights")]
    assert len(matching) == 1, (short, labels)
    assert matching[0].startswith("block/attn_block/attention/")
  assert "block/attn_block/pre_attention_norm/scale.weights" in labels
  assert "block/ffw_block/out_linear.weights" in labels
  assert len(pz.select(model).at_instances_of(pz.nn.Attention).get_sequence()) == 1


def test_sliding_window_attention_is_causal_and_local():
  model = dsl.build(_load("sliding_window_attention.yaml"), init_base_rng=jax.random.key(0))
  order = ("batch", "seq", "embedding")
  x = _floats({"batch": B, "seq": S, "embedding": 8})
  pos = _positions(B, S)
  base = model(x, token_positions=pos).unwrap(*order)
  # changing the last token leaves earlier outputs alone (causal)
  last = pz.nx.wrap(x.unwrap(*order).at[:, -1].add(1.0)).tag(*order)
  out = model(last, token_positions=pos).unwrap(*order)
  np.testing.assert_allclose(base[:, :-1], out[:, :-1], atol=1e-5)
  assert not np.allclose(base[:, -1], out[:, -1])
  # the first token is outside the window (size 2) of the last one
  first = pz.nx.wrap(x.unwrap(*order).at[:, 0].add(1.0)).tag(*order)
  out = model(first, token_positions=pos).unwrap(*order)
  np.testing.assert_allclose(base[:, -1], out[:, -1], atol=1e-5)
  assert not np.allclose(base[:, 0], out[:, 0])


def test_attention_direct_sublayer_labels():
  model = dsl.build(_load("sliding_window_attention.yaml"), init_base_rng=None)
  slots = pz.select(model).at_instances_of(pz.ParameterSlot).get_sequence()
  labels = {s.label for s in slots}
  assert {"local_attn/query.weights", "local_attn/key.weights",
          "local_attn/value.weights"} <= labels
  assert len(labels) == 4
  masks = pz.select(model).at_instances_of(
      pz.nn.ApplyCausalSlidingWindowAttentionMask).get_sequence()
  assert len(masks) == 1 and int(masks[0].sliding_window_size) == 2


# ------------------------------------------------------- Transformer node

TRANSFORMERS = [
    ("transformer_llama.yaml", 11, "transformer/block_1/attention/query.weights"),
    ("transformer_mistral.yaml", 7, "transformer/block_0/mlp/gating_linear.weights"),
    ("transformer_gpt_neox.yaml", 11, "transformer/block_0/attention/query/Linear.weights"),
    ("transformer_gemma.yaml", 9, "transformer/block_1/post_ffw_norm/scale.weights"),
    ("transformer_stacked.yaml", 7, "transformer/blocks/attention/query.weights"),
]


@pytest.mark.parametrize("file,vocab,label", TRANSFORMERS)
def test_transformer_variants(file: str, vocab: int, label: str):
  spec = _load(file)
  report = dsl.check(spec)
  assert _concrete(_static_output(report), {"B": 1, "S": 4}) == {
      "batch": 1, "seq": 4, "vocabulary": vocab}
  skeleton = dsl.build(spec, init_base_rng=None)
  assert isinstance(skeleton, pz.nn.Layer)
  slots = pz.select(skeleton).at_instances_of(pz.ParameterSlot).get_sequence()
  labels = {slot.label for slot in slots}
  assert label in labels
  assert "transformer/embedder.embeddings" in labels
  tokens = _tokens({"batch": 1, "seq": 4}, vocab)
  out = jax.eval_shape(
      lambda k: dsl.build(spec, init_base_rng=k)(tokens), jax.random.key(0))
  assert dict(out.named_shape) == {"batch": 1, "seq": 4, "vocabulary": vocab}


def test_gemma_transformer_ties_embedding_and_decoding():
  model = dsl.build(_load("transformer_gemma.yaml"), init_base_rng=None)
  lookup = pz.select(model).at_instances_of(pz.nn.EmbeddingLookup).get_sequence()
  decode = pz.select(model).at_instances_of(pz.nn.EmbeddingDecode).get_sequence()
  assert lookup[0].table is decode[0].table


@pytest.mark.parametrize(
    "file,count",
    [("tied_embedding.yaml", 13 * 8 + 8 * 8 + 8), ("ref_tying.yaml", 4 * 4 + 4),
     ("repeat_stack.yaml", 3 * (4 * 4 + 4)), ("mlp_node.yaml", 8 * 16 + 16 + 16 * 4 + 4)],
)
def test_shared_parameters_are_counted_once(file: str, count: int):
  assert dsl.check(_load(file)).total_params == count


def test_transformer_parameter_count_matches_report():
  spec = _load("transformer_llama.yaml")
  report = dsl.check(spec)
  shapes = jax.eval_shape(
      lambda k: {p.label: p.value for p in pz.select(dsl.build(spec, init_base_rng=k))
                 .at_instances_of(pz.Parameter).get_sequence()},
      jax.random.key(0),
  )
  assert report.total_params == sum(v.data_array.size for v in shapes.values())


def test_mistral_sliding_window_as_in_reference():
  spec = _load("mistral_window.yaml")
  model = dsl.build(spec, init_base_rng=None)
  masks = pz.select(model).at_instances_of(
      pz.nn.ApplyCausalSlidingWindowAttentionMask).get_sequence()
  assert masks and int(masks[0].sliding_window_size) == 3


def test_misspelled_key_inside_a_union_gives_one_clear_error():
  path = ERRORS / "typo_window.yaml"
  err, text = _spec_error(path)
  assert len(err.errors) == 1, text
  line = _line(text, path, 18)
  assert "did you mean" in line.lower() and "window_size" in line.replace("window_sise", "")
  assert "literal[" not in text and "union[" not in text


def test_hf_sliding_window_name_gets_a_hint():
  path = ERRORS / "typo_in_union.yaml"
  _, text = _spec_error(path)
  line = _line(text, path, 18, 20)
  assert "window_size" in line, text
  assert "missing required key" not in text, text


def test_initializer_names_from_the_reference_are_accepted():
  spec = _load("initializer_names.yaml")
  model = dsl.build(spec, init_base_rng=jax.random.key(0))
  bias = pz.select(model).at_instances_of(pz.nn.AddBias).get_sequence()[0]
  np.testing.assert_array_equal(bias.bias.value.unwrap("features"), np.zeros(4))


def test_arithmetic_without_spaces_and_quoted_references():
  report = dsl.check(_load("arith_nospace.yaml"))
  assert _concrete(_static_output(report), {"B": 2}) == {"batch": 2, "out": 15}


def test_stacked_transformer_builds_a_layer_stack():
  spec = _load("transformer_stacked.yaml")
  model = dsl.build(spec, init_base_rng=None)
  stacks = pz.select(model).at_instances_of(pz.nn.LayerStack).get_sequence()
  assert len(stacks) == 1 and stacks[0].stack_axis_size == 3
  slots = pz.select(model).at_instances_of(pz.ParameterSlot).get_sequence()
  assert "transformer/blocks/attention/query.weights" in {s.label for s in slots}


def test_deep_check_of_stacked_rms_norm():
  report = dsl.check(_load("repeat_stack_norm.yaml"), deep=True)
  assert _concrete(_static_output(report), {"B": 2}) == {"batch": 2, "embedding": 4}


# ----------------------------------------------------------------- errors


def test_misspelled_key_is_located_with_suggestion():
  path = ERRORS / "typo_key.yaml"
  _, text = _spec_error(path)
  line = _line(text, path, 11, 7)
  assert re.search(r"model\.layers(\[0\]|\.0)\.ouput_axes", line), line
  assert "did you mean" in line.lower() and "output_axes" in line


def test_misspelled_type_is_located_with_suggestion():
  path = ERRORS / "typo_type.yaml"
  _, text = _spec_error(path)
  line = _line(text, path, 9)
  assert "Afine" in line and "Affine" in line and "did you mean" in line.lower()


def test_unknown_activation_is_located_with_suggestion():
  path = ERRORS / "typo_activation.yaml"
  _, text = _spec_error(path)
  line = _line(text, path, 13, 11)
  assert re.search(r"model\.layers(\[1\]|\.1)\.fn", line), line
  assert "rellu" in line and "relu" in line.replace("rellu", "")


def test_size_mismatch_names_axis_sizes_and_origin():
  path = ERRORS / "size_mismatch.yaml"
  _, text = _spec_error(path)
  entries = [e for e in text.splitlines() if e.startswith(f"{path}:")]
  assert entries, text
  first = entries[0]
  assert re.match(rf"{re.escape(str(path))}:1[45]:\d+: ", first), first
  assert "features" in first and "16" in first and "32" in first
  assert "model.layers[0].output_axes" in first  # where 32 came from


def test_missing_axis_is_reported():
  path = ERRORS / "missing_axis.yaml"
  _, text = _spec_error(path)
  assert re.search(rf"{re.escape(str(path))}:(9|10):\d+: model\.layers(\[0\]|\.0)", text), text
  assert "embedding" in text


def test_unknown_param_reference_suggests_name():
  path = ERRORS / "unknown_param.yaml"
  _, text = _spec_error(path)
  line = _line(text, path, 11)
  assert "hiden" in line and "hidden" in line.replace("hiden", "")


def test_yaml_syntax_error_has_position():
  path = ERRORS / "syntax.yaml"
  _, text = _spec_error(path)
  assert re.match(rf"{re.escape(str(path))}:[45]:\d+: ", text), text
  assert "Traceback" not in text


def test_unknown_ref_id_is_reported():
  path = ERRORS / "bad_ref.yaml"
  _, text = _spec_error(path)
  assert re.search(rf"{re.escape(str(path))}:1[34]:\d+: model\.layers(\[1\]|\.1)", text), text
  assert "shraed" in text and "shared" in text.replace("shraed", "")


def test_duplicate_parameter_label_is_an_error():
  path = ERRORS / "duplicate_label.yaml"
  _, text = _spec_error(path)
  assert re.search(rf"{re.escape(str(path))}:1[34]:\d+: ", text), text
  assert "net/proj" in text


def test_all_errors_are_reported_at_once():
  path = ERRORS / "several.yaml"
  err, text = _spec_error(path)
  assert len(err.errors) >= 3
  assert "dtype" in _line(text, path, 12, 7)
  assert "gelu_exact" in _line(text, path, 14, 11)
  assert "Softmax" in _line(text, path, 15).replace("Softmaxx", "")


def test_wrong_value_type_is_located():
  path = ERRORS / "wrong_type.yaml"
  _, text = _spec_error(path)
  line = _line(text, path, 8, 10)
  assert "count" in line


def test_residual_shape_change_is_caught_statically():
  path = ERRORS / "residual_mismatch.yaml"
  _, text = _spec_error(path)
  assert text.startswith(f"{path}:")
  assert "features" in text and "4" in text and "6" in text


def test_non_integer_arithmetic_is_rejected():
  path = ERRORS / "division.yaml"
  _, text = _spec_error(path)
  _line(text, path, 11)


def test_python_yaml_tag_is_rejected():
  path = ERRORS / "python_tag.yaml"
  _, text = _spec_error(path)
  assert text.startswith(f"{path}:8:")


def test_missing_required_field_is_named():
  path = ERRORS / "missing_field.yaml"
  _, text = _spec_error(path)
  assert re.search(rf"{re.escape(str(path))}:7:\d+: model", text), text
  assert "output_axes" in text


def test_symbol_conflict_names_symbol_and_sizes():
  path = ERRORS / "symbol_conflict.yaml"
  _, text = _spec_error(path)
  assert re.search(rf"{re.escape(str(path))}:1[2-4]:\d+: model\.layers(\[1\]|\.1)", text), text
  assert "cols" in text and "4" in text and "5" in text


def test_param_cycle_is_reported():
  path = ERRORS / "cycle.yaml"
  _, text = _spec_error(path)
  assert re.search(rf"{re.escape(str(path))}:[45]:\d+: params\.[ab]", text), text
  assert "cycle" in text.lower()


def test_negative_axis_size_is_rejected():
  path = ERRORS / "negative_size.yaml"
  _, text = _spec_error(path)
  _line(text, path, 9)


def test_spec_error_is_not_a_traceback_and_lists_structured_errors():
  err, text = _spec_error(ERRORS / "typo_activation.yaml")
  assert isinstance(err, Exception)
  assert len(err.errors) == 1
  assert "Traceback" not in text


def test_ref_to_a_later_id_is_rejected():
  path = ERRORS / "ref_before_id.yaml"
  _, text = _spec_error(path)
  assert "later" in _line(text, path, 10, 11)


def test_duplicate_id_points_to_both_definitions():
  path = ERRORS / "duplicate_id.yaml"
  _, text = _spec_error(path)
  line = _line(text, path, 15, 11)
  assert "proj" in line and "10" in line


def test_embedding_decode_needs_an_embedding_lookup_id():
  path = ERRORS / "decode_wrong_table.yaml"
  _, text = _spec_error(path)
  line = _line(text, path, 18, 14)
  assert "proj" in line and "EmbeddingLookup" in line


def test_embedding_lookup_of_float_input_is_caught():
  path = ERRORS / "float_input_to_embedding.yaml"
  _, text = _spec_error(path)
  assert "float32" in text and text.startswith(f"{path}:")


def test_undeclared_side_input_is_caught():
  path = ERRORS / "missing_side_input.yaml"
  _, text = _spec_error(path)
  assert "token_positions" in text and "side_inputs" in text


def test_top_level_typos_are_all_reported_with_suggestions():
  path = ERRORS / "top_level_typos.yaml"
  _, text = _spec_error(path)
  assert "'params'" in _line(text, path, 3, 1)
  assert "named_shape" in _line(text, path, 6, 3).replace("named_shapes", "")
  assert "float32" in _line(text, path, 7, 10).replace("flaot32", "")


@pytest.mark.parametrize(
    "file,line,col,words",
    [
        ("empty_branches.yaml", 8, 13, ["branches"]),
        ("drop_rate_range.yaml", 8, 14, ["drop_rate", "1.5"]),
        ("float_param_arith.yaml", 11, 25, ["lr", "0.1"]),
        ("no_rename.yaml", None, None, ["features", "rename_outputs_if_necessary"]),
        ("axis_typo.yaml", 8, None, ["embeding"]),
    ],
)
def test_more_mistakes_are_located(file: str, line: int | None, col: int | None,
                                   words: list[str]):
  path = ERRORS / file
  _, text = _spec_error(path)
  entry = _line(text, path, line, col) if line is not None else text
  assert text.startswith(f"{path}:")
  for word in words:
    assert word in entry, (word, entry)


@pytest.mark.parametrize(
    "file,line,col,words",
    [
        ("variant_typo.yaml", 8, 12, ["lama", "did you mean 'llama'"]),
        ("repeat_grow.yaml", 12, None, ["features", "4", "8"]),
        ("int_input_to_affine.yaml", 13, None, ["int32", "Affine"]),
        ("einsum_typo.yaml", 58, 17, ["projecton", "projection"]),
    ],
)
def test_model_level_mistakes_are_located(file: str, line: int, col: int | None,
                                          words: list[str]):
  path = ERRORS / file
  _, text = _spec_error(path)
  entry = _line(text, path, line, col)
  for word in words:
    assert word in entry, (word, entry)


def test_one_mistake_gives_one_error():
  path = ERRORS / "einsum_typo.yaml"
  err, text = _spec_error(path)
  assert len(err.errors) == 1, text


def test_gpt_neox_field_under_llama_gets_a_useful_hint():
  path = ERRORS / "llama_with_neox_field.yaml"
  _, text = _spec_error(path)
  line = _line(text, path, 9, 3)
  assert "num_kv_heads" in line and "attention_type" not in line


def test_all_listed_activation_names_work():
  spec = _load("activations.yaml")
  x = _floats({"batch": B, "features": 3})
  out = jax.eval_shape(lambda k: dsl.build(spec, init_base_rng=k)(x), jax.random.key(0))
  assert dict(out.named_shape) == {"batch": B, "features": 3}


def test_yaml_anchors_reuse_a_definition_as_a_new_node():
  model = dsl.build(_load("anchors.yaml"), init_base_rng=None)
  slots = pz.select(model).at_instances_of(pz.ParameterSlot).get_sequence()
  assert {s.label for s in slots} == {
      "anchored/Affine_0/Linear.weights", "anchored/Affine_0/AddBias.bias",
      "anchored/Affine_2/Linear.weights", "anchored/Affine_2/AddBias.bias"}


def test_named_group_name_is_optional():
  report = dsl.check(_load("small_forms.yaml"))
  assert _concrete(_static_output(report), {"B": 2}) == {"batch": 2, "features": 4}


def test_softsign_activation_builds():
  spec = _load("softsign.yaml")
  dsl.check(spec)
  model = dsl.build(spec, init_base_rng=None)
  assert len(pz.select(model).at_instances_of(pz.nn.Elementwise).get_sequence()) == 1


# ------------------------------------------------------- specs in Python


def test_python_authored_spec_builds_like_yaml():
  spec = dsl.ModelSpec(
      name="mlp",
      params={"hidden": 32},
      input=dsl.TensorSpec(named_shape={"batch": "B", "features": 8}, dtype="float32"),
      model=dsl.Sequential(
          layers=[
              dsl.Affine(input_axes={"features": 8}, output_axes={"features": 32}),
              dsl.Elementwise(fn="relu"),
              dsl.Affine(input_axes={"features": 32}, output_axes={"features": 2}),
          ]
      ),
  )
  report = dsl.check(spec)
  assert _concrete(_static_output(report), {"B": 2}) == {"batch": 2, "features": 2}
  from_yaml = dsl.build(_load("mlp.yaml"), init_base_rng=None)
  from_python = dsl.build(spec, init_base_rng=None)
  assert jax.tree_util.tree_structure(from_yaml) == jax.tree_util.tree_structure(from_python)


def test_python_spec_with_wrong_field_type_is_rejected():
  with pytest.raises(Exception) as info:
    dsl.Affine(input_axes={"features": "eight"}, output_axes={"features": 2})
  assert "input_axes" in str(info.value)
  with pytest.raises(Exception) as info:
    dsl.Affine(input_axes={"features": 8}, output_axes={"features": 2}, ouput=3)
  assert "ouput" in str(info.value)


# ----------------------------------------------------------------- sweeps


def test_sweep_yields_every_variant_with_overrides():
  base = _load("sweep_base.yaml")
  variants = list(
      dsl.sweep(
          base,
          grid={"params.hidden": [8, 16, 32]},
          zip={"params.depth": [1, 3], "params.lr": [0.01, 0.001]},
      )
  )
  assert len(variants) == 6
  seen = {(v.overrides["params.hidden"], v.overrides["params.depth"]) for v in variants}
  assert seen == {(h, d) for h in (8, 16, 32) for d in (1, 3)}


def test_sweep_over_a_misspelled_param_is_an_error():
  base = _load("sweep_base.yaml")
  with pytest.raises(dsl.SpecError) as info:
    dsl.sweep(base, grid={"params.hiden": [8, 16]})
  assert "hidden" in str(info.value).replace("hiden", "")


def test_sweep_over_an_activation_with_parameter_counts():
  variants = list(dsl.sweep(_load("mlp.yaml"), grid={"model.layers.1.fn": ["relu", "gelu"]}))
  assert [v.overrides for v in variants] == [
      {"model.layers.1.fn": "relu"}, {"model.layers.1.fn": "gelu"}]
  assert [v.params for v in variants] == [354, 354]


def test_sweep_reports_invalid_variant_with_overrides_before_building():
  base = _load("sweep_base.yaml")
  with pytest.raises(dsl.SpecError) as info:
    list(dsl.sweep(base, grid={"params.hidden": [8, -4]}))
  assert "params.hidden" in str(info.value) and "-4" in str(info.value)


# ---------------------------------------------------------------- spec_of


def test_spec_of_round_trips_a_built_model():
  spec = _load("residual_mlp.yaml")
  model = dsl.build(spec, init_base_rng=jax.random.key(0))
  again = dsl.build(dsl.spec_of(model), init_base_rng=jax.random.key(0))
  assert _labels(again) == _labels(model)
  assert jax.tree_util.tree_structure(
      pz.unbind_params(again)[0]
  ) == jax.tree_util.tree_structure(pz.unbind_params(model)[0])


def test_spec_of_an_edited_model():
  model = dsl.build(_load("mlp.yaml"), init_base_rng=jax.random.key(0))
  edited = (
      pz.select(model)
      .at_instances_of(pz.nn.Elementwise)
      .apply(lambda e: pz.nn.Elementwise(jax.nn.gelu))
  )
  spec = dsl.spec_of(edited)
  rebuilt = dsl.build(spec, init_base_rng=jax.random.key(0))
  acts = pz.select(rebuilt).at_instances_of(pz.nn.Elementwise).get_sequence()
  assert [a.fn for a in acts] == [jax.nn.gelu]
  assert _labels(rebuilt) == _labels(model)


def test_spec_of_saved_as_yaml_rebuilds_the_same_model(tmp_path: pathlib.Path):
  key = jax.random.key(0)
  model = dsl.build(_load("tied_embedding.yaml"), init_base_rng=key)
  saved = tmp_path / "saved.yaml"
  saved.write_text(dsl.dumps(dsl.spec_of(model)))
  again = dsl.build(dsl.load(str(saved)), init_base_rng=key)
  assert _labels(again) == _labels(model)
  tokens = _tokens({"batch": B, "seq": S}, 13)
  np.testing.assert_allclose(
      again(tokens).unwrap("batch", "seq", "vocabulary"),
      model(tokens).unwrap("batch", "seq", "vocabulary"), rtol=1e-6)


# -------------------------------------------------------------------- CLI


def _typed_nodes(data: Any) -> list[dict[str, Any]]:
  """Every mapping with a `type` key in loaded YAML data."""
  found: list[dict[str, Any]] = []
  stack = [data]
  while stack:
    item = stack.pop()
    if isinstance(item, dict):
      if isinstance(item.get("type"), str):
        found.append(item)
      stack.extend(item.values())
    elif isinstance(item, list):
      stack.extend(item)
  return found


def test_schema_knows_every_key_a_valid_spec_uses():
  """Editor autocompletion (the JSON Schema) must accept what the loader accepts."""
  import yaml

  res = _cli("schema")
  assert res.returncode == 0
  defs = json.loads(res.stdout)["$defs"]
  variants = {"llama": "TransformerLlama", "mistral": "TransformerMistral",
              "gemma": "TransformerGemma", "gpt_neox": "TransformerGPTNeoX"}
  checked = 0
  for case_file in sorted({c.file for c in CASES} | {t[0] for t in TRANSFORMERS}):
    # `{features: ${hidden}}` (as written in dsl.md) is not standard YAML in a
    # flow mapping; quote the references so PyYAML can read the structure.
    text = re.sub(r"(\$\{[^}]*\})", r"'\1'", (SPECS / case_file).read_text())
    data = yaml.safe_load(text)
    for node in _typed_nodes(data["model"]):
      name = variants[node["variant"]] if node["type"] == "Transformer" else node["type"]
      props = defs[name]["properties"]
      assert set(node) <= set(props), (case_file, name, set(node) - set(props))
      checked += 1
  assert checked > 50


def test_cli_validate_exit_codes():
  ok = _cli("validate", str(SPECS / "mlp.yaml"), str(SPECS / "tied_embedding.yaml"))
  assert ok.returncode == 0, ok.stdout + ok.stderr
  bad = _cli("validate", str(SPECS / "mlp.yaml"), str(ERRORS / "several.yaml"))
  assert bad.returncode == 1
  out = bad.stdout + bad.stderr
  assert f"{ERRORS / 'several.yaml'}:14:11:" in out
  assert "Traceback" not in out
  usage = _cli("validate", "--no-such-flag")
  assert usage.returncode == 2


def test_cli_summary_counts_parameters():
  res = _cli("summary", str(SPECS / "mlp.yaml"))
  assert res.returncode == 0, res.stderr
  # 8*32 + 32 + 32*2 + 2 parameters
  assert "354" in res.stdout.replace(",", "").replace("_", "")
  assert "Affine" in res.stdout


def test_cli_build_runs_forward_and_writes_html(tmp_path: pathlib.Path):
  html = tmp_path / "model.html"
  res = _cli("build", str(SPECS / "mlp.yaml"), "--seed", "0", "--html", str(html))
  assert res.returncode == 0, res.stdout + res.stderr
  assert html.exists() and html.stat().st_size > 0
  assert re.search(r"features\W+2", res.stdout), res.stdout
  assert "354" in res.stdout.replace(",", "").replace("_", "")


def test_cli_schema_and_sweep():
  schema = _cli("schema")
  assert schema.returncode == 0
  doc = json.loads(schema.stdout)
  assert "Affine" in json.dumps(doc)
  sweep = _cli("sweep", str(SPECS / "sweep.yaml"))
  assert sweep.returncode == 0, sweep.stdout + sweep.stderr
  assert sweep.stdout.count("\n") >= 6
  bad = _cli("sweep", str(SPECS / "sweep_bad.yaml"))
  assert bad.returncode == 1
  assert "Traceback" not in bad.stdout + bad.stderr
  assert "params.hidden" in bad.stdout + bad.stderr


def test_cli_sweep_bad_path_is_located_in_the_sweep_file():
  path = SPECS / "sweep_bad_path.yaml"
  res = _cli("sweep", str(path))
  assert res.returncode == 1
  assert f"{path}:3:3:" in res.stdout + res.stderr, res.stdout + res.stderr


def test_cli_sweep_with_misspelled_param_fails():
  res = _cli("sweep", str(SPECS / "sweep_typo.yaml"))
  assert res.returncode == 1
