"""Every error kind of the spec language, with its exact line and column."""

import textwrap

import pytest

from penzai import dsl

HEADER = """\
name: m
input:
  named_shape: {batch: B, features: 8}
"""


def _errors(text: str, check: bool = False) -> list[dsl.SpecIssue]:
  with pytest.raises(dsl.SpecError) as info:
    spec = dsl.loads(textwrap.dedent(text), "doc.yaml")
    if check:
      dsl.check(spec)
  return info.value.errors


def _one(text: str, check: bool = False) -> dsl.SpecIssue:
  errors = _errors(text, check)
  assert len(errors) == 1, [str(e) for e in errors]
  return errors[0]


def test_syntax_error_position():
  e = _one(HEADER + "model: {type: Identity\n")
  assert (e.kind, e.line, e.column, e.file) == ("syntax", 5, 1, "doc.yaml")
  assert str(e).startswith("doc.yaml:5:1: <document>: YAML syntax error")


def test_syntax_error_inside_a_line():
  e = _one(HEADER + "model: {type: Identity, fn: [relu}\n")
  assert (e.kind, e.line, e.column) == ("syntax", 4, 34)


def test_unknown_key_with_suggestion():
  e = _one(HEADER + """\
model:
  type: Linear
  input_axes: {features: 8}
  output_axes: {out: 2}
  initialiser: zeros
""")
  assert (e.kind, e.line, e.column) == ("unknown_key", 8, 3)
  assert e.path == ("model", "initialiser")
  assert "did you mean 'initializer'?" in e.message
  assert str(e) == "doc.yaml:8:3: model.initialiser: " + e.message


def test_wrong_type():
  e = _one(HEADER + """\
model:
  type: Linear
  input_axes: {features: eight}
  output_axes: {out: 2}
""")
  assert (e.kind, e.line, e.column) == ("type", 6, 26)
  assert e.path == ("model", "input_axes", "features")


def test_out_of_range_value():
  e = _one(HEADER + """\
model:
  type: Repeat
  count: 0
  layer: {type: Identity}
""")
  assert (e.kind, e.line, e.column) == ("value", 6, 10)
  assert "0 is out of range" in e.message


def test_unknown_type_name():
  e = _one(HEADER + """\
model:
  type: Sequential
  layers:
    - type: Afine
      input_axes: {features: 8}
""")
  assert (e.kind, e.line, e.column) == ("unknown_type", 7, 13)
  assert e.path == ("model", "layers", 0, "type")
  assert "did you mean 'Affine'?" in e.message


def test_unknown_activation():
  e = _one(HEADER + """\
model:
  type: Elementwise
  fn: gelu_exakt
""")
  assert (e.kind, e.line, e.column) == ("unknown_activation", 6, 7)
  assert "did you mean 'gelu_exact'?" in e.message


def test_bad_reference_unknown_param():
  e = _one("""\
name: m
params: {hidden: 4}
input:
  named_shape: {batch: B, features: 8}
model:
  type: Linear
  input_axes: {features: 8}
  output_axes: {out: ${hiden * 2}}
""")
  assert (e.kind, e.line, e.column) == ("bad_reference", 8, 22)
  assert "unknown parameter 'hiden'; did you mean 'hidden'?" in e.message


def test_non_integer_arithmetic():
  e = _one("""\
name: m
params: {rate: 0.5}
input:
  named_shape: {batch: B, features: 8}
model:
  type: Linear
  input_axes: {features: 8}
  output_axes: {out: ${rate * 2}}
""")
  assert (e.kind, e.line, e.column) == ("bad_reference", 8, 22)
  assert "needs integers" in e.message


def test_reference_cycle():
  e = _one("""\
name: m
params:
  a: ${b + 1}
  b: ${a}
input:
  named_shape: {batch: B, features: 8}
model: {type: Identity}
""")
  assert (e.kind, e.line, e.column) == ("reference_cycle", 4, 6)
  assert "a -> b -> a" in e.message


def test_ref_to_unknown_id():
  e = _one(HEADER + """\
model:
  type: Sequential
  layers:
    - {type: Identity, id: first}
    - {type: Ref, id: frist}
""", check=True)
  assert (e.kind, e.line, e.column) == ("bad_reference", 8, 23)
  assert "did you mean 'first'?" in e.message


def test_ref_cycle_inside_target():
  e = _one(HEADER + """\
model:
  type: Sequential
  id: outer
  layers:
    - {type: Ref, id: outer}
""", check=True)
  assert (e.kind, e.line, e.column) == ("reference_cycle", 8, 23)


def test_duplicate_id():
  e = _one(HEADER + """\
model:
  type: Sequential
  layers:
    - {type: Identity, id: x}
    - {type: Identity, id: x}
""", check=True)
  assert (e.kind, e.line, e.column) == ("duplicate_id", 8, 28)
  assert "first defined at line 7" in e.message


def test_duplicate_parameter_label():
  e = _one(HEADER + """\
model:
  type: Sequential
  layers:
    - type: Linear
      name: proj
      input_axes: {features: 8}
      output_axes: {hidden: 8}
    - type: Linear
      name: proj
      input_axes: {hidden: 8}
      output_axes: {features: 8}
""", check=True)
  assert (e.kind, e.line, e.column) == ("duplicate_label", 12, 7)
  assert "'m/proj.weights'" in e.message and "model.layers[0]" in e.message


def test_axis_missing():
  e = _one(HEADER + """\
model:
  type: Sequential
  layers:
    - type: Linear
      input_axes: {feature: 8}
      output_axes: {hidden: 4}
""", check=True)
  assert (e.kind, e.line, e.column) == ("axis_missing", 8, 7)
  assert "'feature'" in e.message and "batch: B, features: 8" in e.message


def test_size_mismatch_names_both_origins():
  e = _one(HEADER + """\
model:
  type: Sequential
  layers:
    - type: Linear
      input_axes: {features: 8}
      output_axes: {hidden: 4}
    - type: Linear
      input_axes: {hidden: 5}
      output_axes: {out: 2}
""", check=True)
  assert (e.kind, e.line, e.column) == ("size_mismatch", 11, 7)
  assert "expected 5 (model.layers[1].input_axes.hidden)" in e.message
  assert "found 4 (from model.layers[0].output_axes)" in e.message


def test_symbol_conflict_names_binding_site():
  e = _one("""\
name: m
input:
  named_shape: {batch: B, seq: S, embedding: 4}
side_inputs:
  pos: {named_shape: {batch: 2, seq: 3}, dtype: int32}
  mask: {named_shape: {batch: 5}, dtype: bool}
model:
  type: Sequential
  layers:
    - {type: ApplyRoPE, embedding_axis: embedding, max_wavelength: 100, positions_input_name: pos}
    - {type: ApplyExplicitAttentionMask, mask_input_name: mask}
""", check=True)
  assert (e.kind, e.line, e.column) == ("symbol_conflict", 11, 7)
  assert "symbol B is bound to 2" in e.message
  assert "side_inputs.pos.named_shape.batch" in e.message


def test_all_errors_reported_together_in_line_order():
  errors = _errors(HEADER + """\
model:
  type: Sequential
  layers:
    - type: Linaer
    - type: Elementwise
      fn: rleu
    - type: Linear
      input_axes: {features: 8}
      output_axes: {out: 2}
      bogus: 1
""")
  assert [(e.kind, e.line) for e in errors] == [
      ("unknown_type", 7), ("unknown_activation", 9), ("unknown_key", 13)
  ]


def test_spec_error_is_value_error_with_structured_list():
  with pytest.raises(ValueError) as info:
    dsl.loads("model: [", "x.yaml")
  assert isinstance(info.value, dsl.SpecError)
  assert info.value.errors[0].kind == "syntax"


def test_field_of_another_variant_names_the_variant():
  errors = _errors(HEADER.replace("features: 8}", "seq: S}") + """\
model:
  type: Transformer
  variant: llama
  num_attention_heads: 2
  query_head_multiplier: 1
  embedding_dim: 8
  projection_dim: 4
  mlp_hidden_dim: 8
  num_decoder_blocks: 1
  vocab_size: 5
""")
  (e,) = [e for e in errors if e.kind == "unknown_key"]
  assert (e.line, e.column) == (7, 3)
  assert "field of Transformer variant 'gpt_neox'" in e.message and "needs num_kv_heads" in e.message


def test_union_error_is_reported_once_from_the_closest_member():
  e = _one(HEADER.replace("features: 8}", "seq: S}") + """\
model: {type: Transformer, variant: llama, num_kv_heads: 1, query_head_multiplier: 1, embedding_dim: 8,
        projection_dim: 4, mlp_hidden_dim: 8, num_decoder_blocks: 1, vocab_size: 5,
        attention_type: {windowsize: 3}}
""")
  assert (e.kind, e.line, e.column) == ("unknown_key", 6, 26)
  assert "did you mean 'window_size'?" in e.message and "literal" not in str(e)


def test_one_shape_mistake_gives_one_error_even_through_tuples():
  errors = _errors("""\
name: m
input: {named_shape: {s: 3, p: 2}}
model:
  type: Attention
  input_to_query: {type: Identity}
  input_to_key: {type: Identity}
  input_to_value: {type: Identity}
  query_key_to_attn:
    type: NamedEinsum
    input_axes: [{s: q, pp: x}, {s: k, p: x}]
    output_axes: {s: q, t: k}
  attn_value_to_output:
    type: NamedEinsum
    input_axes: [{s: q, t: k}, {s: k, p: x}]
    output_axes: {s: q, p: x}
""", check=True)
  assert [(e.kind, e.line) for e in errors] == [("axis_missing", 10)]
