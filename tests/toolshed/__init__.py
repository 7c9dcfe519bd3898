"""Tests for penzai.toolshed (a package so test module names stay unique)."""
