"""Deprecated alias of the V2 API, which now lives in the top-level `penzai`.

Importing this package warns and registers lightweight *redirector* modules
(`penzai.experimental.v2.pz`, `.nn.layer`, ...) whose attributes resolve
lazily to the corresponding modules under `penzai`.
"""

from __future__ import annotations

import warnings as _warnings

_warnings.warn(
    "Accessing Penzai's V2 API from `penzai.experimental.v2` is deprecated. As"
    " of the 0.2.0 release, the V2 API is now available in the top-level"
    " `penzai` namespace. Please use `penzai` directly instead."
)


def _make_redirector(stub_name: str, target_name: str | None) -> None:
  """Registers a stub module `stub_name` forwarding to module `target_name`.

  The stub is placed in `sys.modules` and set as an attribute of its parent
  module. With a target, attribute lookups import the target lazily; without
  one, the stub only holds its child stubs.
  """
  import importlib  # pylint: disable=g-import-not-at-top
  import importlib.machinery  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from typing import Any  # pylint: disable=g-import-not-at-top

  spec = importlib.machinery.ModuleSpec(stub_name, loader=None)
  stub = importlib.util.module_from_spec(spec)
  stub.__doc__ = f"Redirector module for {stub_name}."

  if target_name is not None:

    def __getattr__(name: str) -> Any:  # pylint: disable=invalid-name
      if name.startswith("__"):
        raise AttributeError(f"module '{stub_name}' has no attribute '{name}'")
      target = importlib.import_module(target_name)
      return getattr(target, name)

    def __dir__() -> list[str]:  # pylint: disable=invalid-name
      return dir(importlib.import_module(target_name))

    setattr(stub, "__getattr__", __getattr__)
    setattr(stub, "__dir__", __dir__)

  sys.modules[stub_name] = stub
  parent_name, _, child_name = stub_name.rpartition(".")
  setattr(sys.modules[parent_name], child_name, stub)


_make_redirector("penzai.experimental.v2.core", None)
_make_redirector(
    "penzai.experimental.v2.core.auto_order_types",
    "penzai.core.auto_order_types",
)
_make_redirector(
    "penzai.experimental.v2.core.random_stream", "penzai.core.random_stream"
)
_make_redirector(
    "penzai.experimental.v2.core.variables", "penzai.core.variables"
)

_make_redirector("penzai.experimental.v2.models", None)
_make_redirector(
    "penzai.experimental.v2.models.simple_mlp", "penzai.models.simple_mlp"
)
_make_redirector("penzai.experimental.v2.models.transformer", None)
for _name in ("model_parts", "sampling_mode", "simple_decoding_loop"):
  _make_redirector(
      f"penzai.experimental.v2.models.transformer.{_name}",
      f"penzai.models.transformer.{_name}",
  )
_make_redirector("penzai.experimental.v2.models.transformer.variants", None)
# Upstream registers this oddly-named stub (trailing dot); kept for parity.
_make_redirector(
    "penzai.experimental.v2.models.transformer.variants.",
    "penzai.models.transformer.variants.",
)
for _name in ("gemma", "gpt_neox", "llamalike_common", "llama", "mistral"):
  _make_redirector(
      f"penzai.experimental.v2.models.transformer.variants.{_name}",
      f"penzai.models.transformer.variants.{_name}",
  )

_make_redirector("penzai.experimental.v2.nn", None)
for _name in (
    "attention",
    "basic_ops",
    "combinators",
    "dropout",
    "embeddings",
    "grouping",
    "layer",
    "layer_stack",
    "linear_and_affine",
    "parameters",
    "standardization",
):
  _make_redirector(f"penzai.experimental.v2.nn.{_name}", f"penzai.nn.{_name}")

_make_redirector("penzai.experimental.v2.pz", "penzai.pz")
_make_redirector("penzai.experimental.v2.pz.nn", "penzai.pz.nn")
_make_redirector("penzai.experimental.v2.pz.ts", "penzai.pz.ts")

_make_redirector("penzai.experimental.v2.toolshed", None)
for _name in (
    "basic_training",
    "gradient_checkpointing",
    "isolate_submodel",
    "jit_wrapper",
    "lora",
    "model_rewiring",
    "save_intermediates",
    "sharding_util",
    "unflaxify",
):
  _make_redirector(
      f"penzai.experimental.v2.toolshed.{_name}", f"penzai.toolshed.{_name}"
  )

del _name
