"""Penzai: a JAX library for building, editing and visualizing neural networks."""

__version__ = "0.2.5"
