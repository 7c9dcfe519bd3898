"""Reference conformance: objects are defined in the module the reference names.

Treescope's roundtrip rendering prints module-qualified names
(``penzai.nn.linear_and_affine.Affine(...)``), and pickling/serialization
relies on ``__module__``/``__qualname__``, so every class and function listed in
the audit tables must report the documented module.
"""

from __future__ import annotations

import pytest

import refconf_core_test
import refconf_harness as h
import refconf_models_test
import refconf_nn_test
import refconf_toolshed_test

_TABLES = (refconf_core_test, refconf_nn_test, refconf_models_test, refconf_toolshed_test)


def _module_level_targets() -> list[str]:
  targets = {spec.target for m in _TABLES for spec in m.CLASSES}
  for module in _TABLES:
    for target, _ in module.CALLABLES:
      module_name, _, path = target.partition(":")
      if "." not in path and ".patch_ipdb" not in module_name:
        targets.add(target)
  return sorted(targets)


@pytest.mark.parametrize("target", _module_level_targets())
def test_defined_in_documented_module(target: str) -> None:
  module_name, _, name = target.partition(":")
  obj = h.resolve(target)
  if name == "wrap":  # `wrap = NamedArray.wrap`, a bound classmethod
    obj = obj.__func__
  if name == "zero_initializer":  # built by `constant_initializer(0.0)`
    assert obj.__module__ == module_name
    return
  assert (obj.__module__, obj.__qualname__.rpartition(".")[2]) == (module_name, name.rpartition(".")[2])
