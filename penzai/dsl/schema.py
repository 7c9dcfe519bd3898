"""JSON Schema of spec documents, generated from the Pydantic node models.

`schemas/model-spec.schema.json` is this output; a test fails when the
committed file is stale (regenerate with `penzai schema > schemas/model-spec.schema.json`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema


def node_classes() -> list[type[Any]]:
  """Every spec class of the built-in node types (variants included), in registry order."""
  from penzai.dsl import builtins  # noqa: F401
  from penzai.dsl import registry

  classes: list[type[Any]] = []
  for name, entry in registry.layer_types().items():
    if entry.user:
      continue
    variant = registry.variants().get(name)
    if variant is not None:
      classes.extend(variant[1].values())
    else:
      classes.append(entry.spec_cls)
  return classes


def json_schema() -> dict[str, Any]:
  """The JSON Schema (draft 2020-12) of a spec document."""
  from penzai.dsl.document import ModelSpec
  from penzai.dsl import registry

  classes = node_classes()
  refs, top = models_json_schema(
      [(cls, "validation") for cls in classes] + [(ModelSpec, "validation")],
      ref_template="#/$defs/{model}",
  )
  defs = top["$defs"]
  variant_types = {name: field for name, (field, _) in registry.variants().items()}
  layer_refs = []
  for cls in classes:
    ref = refs[(cls, "validation")]["$ref"]
    layer_refs.append({"$ref": ref})
    schema = defs[ref.split("/")[-1]]
    type_name = cls.model_fields["type"].default
    first = [k for k in ("type", variant_types.get(type_name)) if k]
    schema["required"] = first + [k for k in schema.get("required", []) if k not in first]
  defs["Layer"] = {"description": "A layer node: a mapping with a `type` key.", "oneOf": layer_refs}
  root_ref = refs[(ModelSpec, "validation")]["$ref"].split("/")[-1]
  root = dict(defs.pop(root_ref))
  out: dict[str, Any] = {
      "$schema": "https://json-schema.org/draft/2020-12/schema",
      "$id": "https://penzai.dev/schemas/model-spec.schema.json",
      "title": "Penzai model spec",
  }
  out.update({k: v for k, v in root.items() if k != "title"})
  defs = {k: _allow_refs(v) for k, v in defs.items()}
  defs["Reference"] = {
      "description": "A `${name}` or `${integer expression}` over `params`.",
      "pattern": "^\\$\\{[^{}]*\\}$",
      "type": "string",
  }
  out["$defs"] = dict(sorted(defs.items()))
  return _link_layers(out)


def _allow_refs(value: Any) -> Any:
  """Lets every number, boolean or patterned string also be a `${...}` reference."""
  if isinstance(value, dict):
    patterned = value.get("type") == "string" and "pattern" in value
    if (value.get("type") in ("integer", "number", "boolean") or patterned) and "const" not in value:
      return {"anyOf": [value, {"$ref": "#/$defs/Reference"}]}
    return {k: _allow_refs(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_allow_refs(v) for v in value]
  return value


def _link_layers(value: Any) -> Any:
  if isinstance(value, dict):
    if value.get("x-penzai-layer"):
      rest = {k: v for k, v in value.items() if k != "x-penzai-layer"}
      return {"$ref": "#/$defs/Layer", **rest}
    return {k: _link_layers(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_link_layers(v) for v in value]
  return value


def schema_text() -> str:
  """The schema as stable, pretty-printed JSON text (ends with a newline)."""
  return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
