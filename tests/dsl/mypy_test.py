"""Python-authored specs are type-checked: mypy (pydantic plugin) rejects wrong field types."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

GOOD_AND_BAD = '''\
from penzai import dsl

ok = dsl.Linear(input_axes={"features": 8}, output_axes={"hidden": 4})
seq = dsl.Sequential(layers=[ok, dsl.Elementwise(fn="relu")])
bad = dsl.Linear(input_axes={"features": 8}, output_axes="hidden")
'''


# The repository config (pydantic plugin) plus skipping the heavy modules the
# spec classes do not depend on, so that the check takes seconds, not minutes.
_SKIP = ["jax", "jaxlib", "numpy", "treescope", "penzai.core", "penzai.nn", "penzai.models",
         "penzai.pz", "penzai.toolshed", "torch", "transformers"]


def test_mypy_rejects_wrong_field_type(tmp_path):
  src = tmp_path / "python_spec.py"
  src.write_text(GOOD_AND_BAD)
  config = (ROOT / "mypy.ini").read_text().replace("files = penzai, examples\n", "")
  config += "".join(f"\n[mypy-{mod}.*]\nfollow_imports = skip\n[mypy-{mod}]\nfollow_imports = skip\n" for mod in _SKIP)
  (tmp_path / "mypy.ini").write_text(config)
  result = subprocess.run(
      [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"), "--no-incremental",
       "--cache-dir", str(tmp_path / "cache"), str(src)],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
  )
  out = result.stdout
  assert result.returncode == 1, out + result.stderr
  errors = [line for line in out.splitlines() if ": error:" in line]
  assert len(errors) == 1, out
  assert "python_spec.py:5:" in errors[0]
  assert 'Argument "output_axes" to "Linear" has incompatible type "str"' in errors[0]
