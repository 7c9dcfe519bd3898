"""The `penzai` command line: exit codes and output, no tracebacks."""

import json
import pathlib

from penzai.dsl import cli

SPECS = pathlib.Path(__file__).resolve().parents[2] / "examples" / "specs"


def test_validate_ok(capsys):
  assert cli.main(["validate", str(SPECS / "mlp.yaml"), str(SPECS / "tied_embedding.yaml")]) == 0
  assert capsys.readouterr().out.count(": ok") == 2


def test_validate_invalid_prints_positions_without_traceback(tmp_path, capsys):
  bad = tmp_path / "bad.yaml"
  bad.write_text("name: m\ninput: {named_shape: {x: 2}}\nmodel:\n  type: Elementwise\n  fn: rleu\n")
  assert cli.main(["validate", str(bad)]) == 1
  err = capsys.readouterr().err
  assert f"{bad}:5:7: model.fn: unknown activation function 'rleu'; did you mean 'relu'?" in err
  assert "Traceback" not in err


def test_debug_shows_traceback(tmp_path, capsys):
  bad = tmp_path / "bad.yaml"
  bad.write_text("model: [")
  assert cli.main(["--debug", "summary", str(bad)]) == 1
  assert "Traceback" in capsys.readouterr().err
  assert cli.main(["summary", str(bad), "--debug"]) == 1
  assert "Traceback" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
  assert cli.main([]) == 2
  assert cli.main(["frobnicate"]) == 2
  assert cli.main(["build"]) == 2
  capsys.readouterr()


def test_missing_file_is_an_invalid_spec(capsys):
  assert cli.main(["validate", "/nonexistent/x.yaml"]) == 1
  assert "cannot read spec file" in capsys.readouterr().err


def test_summary_table(capsys):
  assert cli.main(["summary", str(SPECS / "mlp.yaml")]) == 0
  out = capsys.readouterr().out
  assert "model.layers[0]  Affine" in out
  assert "total parameters: 354" in out


def test_schema_prints_json(capsys):
  assert cli.main(["schema"]) == 0
  schema = json.loads(capsys.readouterr().out)
  assert schema["title"] == "Penzai model spec"


def test_sweep_table(capsys):
  assert cli.main(["sweep", str(SPECS / "sweep_mlp.yaml")]) == 0
  assert "6 variants, all valid" in capsys.readouterr().out


def test_build_runs_forward_and_writes_html(tmp_path, capsys):
  html = tmp_path / "model.html"
  assert cli.main(["build", str(SPECS / "mlp.yaml"), "--seed", "1", "--html", str(html)]) == 0
  out = capsys.readouterr().out
  assert "output shape: {'batch': 11, 'features': 2} float32" in out
  assert html.read_text().strip()
