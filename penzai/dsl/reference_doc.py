"""Generates the language reference (every node type and its fields) for docs/dsl.md.

The reference is rebuilt from the spec models, so it cannot drift: a test
fails when the committed docs differ. Regenerate with
`python -m penzai.dsl.reference_doc docs/dsl.md`.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Any

BEGIN = "<!-- BEGIN GENERATED REFERENCE (python -m penzai.dsl.reference_doc docs/dsl.md) -->"
END = "<!-- END GENERATED REFERENCE -->"


def _type_str(annotation: Any) -> str:
  from penzai.dsl.nodes import _LayerDispatch

  origin = typing.get_origin(annotation)
  args = typing.get_args(annotation)
  if origin is typing.Annotated:
    if any(isinstance(m, _LayerDispatch) for m in args[1:]):
      return "Layer"
    return _type_str(args[0])
  if origin is typing.Literal:
    return " \\| ".join(repr(a) for a in args)
  if origin in (typing.Union, types.UnionType):
    return " \\| ".join(_type_str(a) for a in args)
  if origin in (list, dict, tuple):
    return f"{origin.__name__}[{', '.join(_type_str(a) for a in args)}]"
  if annotation is type(None):
    return "null"
  if annotation is typing.Any:
    return "any"
  return getattr(annotation, "__name__", str(annotation))


def _default_str(info: Any) -> str:
  if info.is_required():
    return "**required**"
  value = info.get_default(call_default_factory=True)
  if hasattr(value, "model_dump"):
    value = value.model_dump()
  return f"`{value!r}`"


def _table(cls: Any, skip: tuple[str, ...] = ("type",)) -> list[str]:
  rows = ["| field | type | default | description |", "| --- | --- | --- | --- |"]
  for field, info in cls.model_fields.items():
    if field in skip:
      continue
    from penzai.dsl.nodes import _LayerDispatch

    desc = (info.description or "").replace("|", "\\|")
    type_str = "Layer" if any(isinstance(m, _LayerDispatch) for m in info.metadata) else _type_str(info.annotation)
    rows.append(f"| `{field}` | {type_str} | {_default_str(info)} | {desc} |")
  return rows


def reference_markdown() -> str:
  """The generated reference section (between the BEGIN/END markers)."""
  from penzai.dsl import registry, schema
  from penzai.dsl.document import ModelSpec, TensorSpec

  lines = [BEGIN, "", "### Document", "", (ModelSpec.__doc__ or "").strip(), ""]
  lines += _table(ModelSpec, skip=())
  lines += ["", "`TensorSpec`: " + (TensorSpec.__doc__ or "").strip(), ""]
  lines += _table(TensorSpec, skip=())
  lines += ["", "Every layer node also accepts `name` (path segment of its parameter labels; default",
            "`{type}_{index}` in a list, the field name for single-layer fields, nothing for the root;",
            "`\"\"` adds no segment) and `id` (for `Ref` / `EmbeddingDecode.table`), except `Ref`.", ""]
  seen_variant: set[str] = set()
  for cls in schema.node_classes():
    type_name = cls.model_fields["type"].default
    variant = registry.variants().get(type_name)
    if variant is not None:
      value = cls.model_fields[variant[0]].annotation
      value_name = typing.get_args(value)[0] if typing.get_args(value) else "?"
      if type_name not in seen_variant:
        seen_variant.add(type_name)
      title = f"### `{type_name}` (`{variant[0]}: {value_name}`)"
    else:
      title = f"### `{type_name}`"
    lines += [title, "", (cls.__doc__ or "").strip(), ""]
    skip: tuple[str, ...] = ("type", "name", "id") if type_name != "Ref" else ("type",)
    if variant is not None:
      skip += (variant[0],)
    if type_name == "NamedGroup":
      skip = ("type", "id")
    table = _table(cls, skip)
    lines += table if len(table) > 2 else ["(no fields)"]
    lines.append("")
  lines += ["### Activation functions", "", ", ".join(f"`{a}`" for a in registry.builtin_activation_names()), ""]
  lines += ["### Initializers", "", ", ".join(f"`{a}`" for a in registry.initializer_names()), ""]
  lines += ["### Dtypes", "", ", ".join(f"`{a}`" for a in registry.dtype_names()), "", END]
  return "\n".join(lines)


def update(text: str) -> str:
  """`text` with its generated section replaced by the current reference."""
  start, end = text.index(BEGIN), text.index(END) + len(END)
  return text[:start] + reference_markdown() + text[end:]


def main(argv: list[str]) -> int:
  """Rewrites the reference section of the given Markdown file."""
  from penzai.dsl import builtins  # noqa: F401

  path = argv[0] if argv else "docs/dsl.md"
  with open(path, encoding="utf-8") as f:
    text = f.read()
  with open(path, "w", encoding="utf-8") as f:
    f.write(update(text))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
