"""Runs examples/train_mlp.py for a few steps and checks the loss falls."""

import importlib.util
import pathlib

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_mlp.py"


def _load_example():
  spec = importlib.util.spec_from_file_location("train_mlp_example", EXAMPLE)
  assert spec is not None and spec.loader is not None
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_train_mlp_example_runs_and_loss_falls(capsys):
  losses = _load_example().main(["--steps", "30", "--batch", "64"])
  out = capsys.readouterr().out
  assert "step    30/30" in out
  assert "loss went from" in out
  assert len(losses) >= 3
  assert losses[-1] < losses[0]


def test_train_mlp_example_rejects_bad_steps():
  with pytest.raises(SystemExit):
    _load_example().main(["--steps", "0"])
