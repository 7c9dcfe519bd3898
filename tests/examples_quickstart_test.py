"""The quickstart example runs and prints what it demonstrates."""

import contextlib
import importlib.util
import io
import pathlib
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"


def test_quickstart_runs_and_reports_mismatch():
  spec = importlib.util.spec_from_file_location("quickstart_example", EXAMPLE)
  assert spec is not None and spec.loader is not None
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    module.main()
  text = out.getvalue()
  assert "sum over seq, per batch: [ 3. 12.]" in text
  assert "factors after:  [4.0, 6.0]" in text
  assert "Actual size 3 does not match expected 4" in text
