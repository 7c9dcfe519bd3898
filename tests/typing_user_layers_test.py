"""Users' own layer classes type-check against penzai (the package ships py.typed)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

USER_CODE = '''\
import dataclasses

import jax
from penzai import pz


@pz.pytree_dataclass
class Scale(pz.nn.Layer):
  factor: float
  axis: str = dataclasses.field(default="features", metadata={"pytree_node": False})

  def __call__(self, argument: pz.nx.NamedArray, /, **side_inputs) -> pz.nx.NamedArray:
    return argument * self.factor


good = Scale(factor=2.0, axis="embedding")
positional = Scale(0.5)
wrong_type = Scale(factor="two")
missing = Scale(axis="x")
'''


def test_mypy_reports_wrong_field_type_and_missing_field(tmp_path):
  assert (ROOT / "penzai" / "py.typed").exists()
  src = tmp_path / "user_layers.py"
  src.write_text(USER_CODE)
  config = (ROOT / "mypy.ini").read_text().replace("files = penzai, examples\n", "")
  # Only penzai's own annotations matter here; skipping the third-party
  # packages' sources keeps this check fast.
  for mod in ("jax", "jaxlib", "numpy", "treescope", "torch", "transformers", "optax", "flax", "orbax"):
    config += f"\n[mypy-{mod}]\nfollow_imports = skip\n[mypy-{mod}.*]\nfollow_imports = skip\n"
  (tmp_path / "mypy.ini").write_text(config)
  result = subprocess.run(
      [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"),
       "--cache-dir", str(tmp_path / "cache"), str(src)],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
  )
  errors = [line for line in result.stdout.splitlines() if ": error:" in line]
  assert result.returncode == 1, result.stdout + result.stderr
  assert len(errors) == 2, result.stdout
  assert errors[0].startswith(f"{src}:18:"), errors
  assert 'Argument "factor" to "Scale" has incompatible type "str"' in errors[0]
  assert errors[1].startswith(f"{src}:19:"), errors
  assert 'Missing positional argument "factor"' in errors[1]
