"""Tests for penzai.toolshed.patch_ipdb.

Uses the real IPython when installed; otherwise a minimal stand-in module
(just `IPython.core.debugger.Pdb` and `IPython.display.display`) is placed in
`sys.modules` so the patching logic is still exercised.
"""

from __future__ import annotations

import importlib
import sys
import types

import pytest


def _fake_ipython(monkeypatch):
  ipython = types.ModuleType("IPython")
  core = types.ModuleType("IPython.core")
  debugger = types.ModuleType("IPython.core.debugger")
  display = types.ModuleType("IPython.display")

  class Pdb:
    def displayhook(self, obj):
      return ("original", obj)

  debugger.Pdb = Pdb
  display.display = lambda obj: None
  ipython.core = core
  ipython.display = display
  core.debugger = debugger
  for name, module in [
      ("IPython", ipython), ("IPython.core", core),
      ("IPython.core.debugger", debugger), ("IPython.display", display),
  ]:
    monkeypatch.setitem(sys.modules, name, module)
  return ipython


@pytest.fixture
def ipython_and_module(monkeypatch):
  try:
    import IPython  # pylint: disable=g-import-not-at-top
    import IPython.core.debugger  # pylint: disable=g-import-not-at-top
    import IPython.display  # pylint: disable=g-import-not-at-top
  except ImportError:
    IPython = _fake_ipython(monkeypatch)
    sys.modules.pop("penzai.toolshed.patch_ipdb", None)
  module = importlib.import_module("penzai.toolshed.patch_ipdb")
  yield IPython, module
  # Drop the module so a later import binds to whatever IPython is real.
  sys.modules.pop("penzai.toolshed.patch_ipdb", None)


def test_patch_and_unpatch_roundtrip(ipython_and_module, monkeypatch):
  ipython, patch_ipdb = ipython_and_module
  pdb_cls = ipython.core.debugger.Pdb
  original = pdb_cls.displayhook
  shown = []
  monkeypatch.setattr(ipython.display, "display", shown.append)
  try:
    patch_ipdb.patch_ipdb()
    assert pdb_cls.displayhook is patch_ipdb.displayhook_with_ipython
    with pytest.raises(
        ValueError,
        match="IPython.core.debugger.Pdb.displayhook has already been patched!",
    ):
      patch_ipdb.patch_ipdb()
    # The hook is a class attribute: instances (and subclasses) use it.
    pdb_cls.displayhook(object(), 42)
    patch_ipdb.displayhook_with_ipython(None, None)
    assert shown == [42]
    patch_ipdb.patch_ipdb(force=True)
    assert pdb_cls.displayhook is patch_ipdb.displayhook_with_ipython
  finally:
    patch_ipdb.unpatch_ipdb()
  assert pdb_cls.displayhook is original
  assert patch_ipdb.old_displayhook is None
  with pytest.raises(AssertionError):
    patch_ipdb.unpatch_ipdb()
