"""Older module paths still resolve to the same objects as the `pz` names."""

import dataclasses

import pytest

from penzai import pz
from penzai.core import context, dataclass_util


def test_context_module_reexports_pz_objects():
  assert context.ContextualValue is pz.ContextualValue
  assert context.enable_interactive_context is pz.enable_interactive_context
  value = context.ContextualValue(1)
  with value.set_scoped(2):
    assert value.get() == 2
  assert value.get() == 1


def test_dataclass_util_module_reexports_pz_objects():
  assert dataclass_util.dataclass_from_attributes is pz.dataclass_from_attributes
  assert dataclass_util.init_takes_fields is pz.init_takes_fields

  @dataclasses.dataclass
  class Point:
    x: int
    y: int

    def __init__(self, both: int):
      self.x = self.y = both

  made = dataclass_util.dataclass_from_attributes(Point, x=1, y=2)
  assert (made.x, made.y) == (1, 2)
  assert not dataclass_util.init_takes_fields(Point)
  with pytest.raises(ValueError, match="Incorrect fields"):
    dataclass_util.dataclass_from_attributes(Point, x=1)
