"""Treescope rendering for penzai core objects (imported lazily when rendering)."""
