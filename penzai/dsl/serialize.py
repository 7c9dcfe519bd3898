"""Spec -> plain data -> YAML, so that `loads(dumps(spec)) == spec`."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

_HEADER = "# yaml-language-server: $schema={schema}\n"


def to_data(value: Any) -> Any:
  """Plain data for a spec, a node or any value inside one.

  Nodes always include `type` first (and `variant` for Transformer nodes);
  other fields are included only when they differ from their defaults.
  """
  if isinstance(value, BaseModel):
    out: dict[str, Any] = {}
    fields = type(value).model_fields
    for key in ("type", "variant"):
      if key in fields:
        out[key] = getattr(value, key)
    for key, info in fields.items():
      if key in out:
        continue
      item = getattr(value, key)
      if not info.is_required() and info.get_default(call_default_factory=True) == item:
        continue
      out[key] = to_data(item)
    return out
  if isinstance(value, dict):
    return {k: to_data(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_data(v) for v in value]
  return value


class _Dumper(yaml.SafeDumper):
  pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> Any:
  return dumper.represent_scalar("tag:yaml.org,2002:str", data)


def dumps(spec: Any, schema: str | None = None) -> str:
  """Renders a spec (or node) as YAML text (with an optional schema comment)."""
  text = yaml.dump(to_data(spec), Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100)
  if schema:
    text = _HEADER.format(schema=schema) + text
  return text
