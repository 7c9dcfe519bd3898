"""Tests for penzai.core.syntactic_sugar (`pz.slice`)."""

from penzai import pz
from penzai.core import syntactic_sugar


def test_slice_returns_indexer():
  assert pz.slice[1:3] == slice(1, 3, None)
  assert pz.slice[0, ::2, "x"] == (0, slice(None, None, 2), "x")
  assert pz.slice[...] is Ellipsis
  assert pz.slice[5] == 5


def test_slice_object():
  assert pz.slice is syntactic_sugar.slice
  assert isinstance(pz.slice, syntactic_sugar.SliceLike)
  assert repr(pz.slice) == "SliceLike()"
  assert syntactic_sugar.SliceLike() == pz.slice
