"""Whole-document rules that the schema cannot express: ids, references, labels.

Also defines the traversal shared by the checker and builder: every node's
key path and build name (`parent/segment`, segment = `name` or
`{type}_{index}` in a list, or the field name for single-layer fields).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from penzai.dsl import labels as labels_mod
from penzai.dsl import nodes
from penzai.dsl.errors import Path, SpecError, SpecIssue, suggest
from penzai.dsl.loader import Locator


def join(parent: str, segment: str) -> str:
  """Joins a build name and a path segment ('' segments add nothing)."""
  if not segment:
    return parent
  if not parent:
    return segment
  return f"{parent}/{segment}"


def child_name(parent: str, default_segment: str, child: nodes.NodeBase) -> str:
  """Build name of `child` under `parent`."""
  own = getattr(child, "name", None)
  return join(parent, own if own is not None else default_segment)


def root_name(spec: Any, name: str | None = None) -> str:
  """Build name of the root node: the document name (or `name`) joined with the root's own `name`."""
  base = name if name is not None else spec.name
  own = getattr(spec.model, "name", None)
  return join(base, own or "")


_LOCATORS: dict[int, tuple[Any, Locator, Any]] = {}


def attach_locator(spec: Any, locator: Locator, raw: Any = None) -> None:
  """Remembers where a loaded spec came from (positions, and its unresolved data for sweeps)."""
  if len(_LOCATORS) > 256:
    _LOCATORS.pop(next(iter(_LOCATORS)))
  _LOCATORS[id(spec)] = (spec, locator, raw)


def raw_data_of(spec: Any) -> Any:
  """The loaded document data of `spec` with `${...}` references unresolved (None if built in Python)."""
  hit = _LOCATORS.get(id(spec))
  return hit[2] if hit is not None and hit[0] is spec else None


def locator_of(spec: Any) -> Locator:
  """The Locator of a loaded spec, or an empty one for Python-built specs."""
  hit = _LOCATORS.get(id(spec))
  if hit is not None and hit[0] is spec:
    return hit[1]
  return Locator(file=None)


@dataclasses.dataclass
class NodeVisit:
  """A node met during traversal."""

  node: nodes.NodeBase
  path: Path
  name: str
  in_repeat: bool
  in_stack: bool
  ancestors: tuple[int, ...]  # id()s of enclosing nodes


def walk(spec: Any, name: str | None = None, expand_repeats: bool = False) -> Iterator[NodeVisit]:
  """Depth-first traversal of the layer nodes of `spec` (document order).

  With `expand_repeats`, a non-stacked Repeat's layer is visited once per copy
  (with each copy's build name); otherwise once, as copy 0.
  """
  stack: list[tuple[nodes.NodeBase, Path, str, bool, bool, tuple[int, ...]]] = [
      (spec.model, ("model",), root_name(spec, name), False, False, ())
  ]
  while stack:
    node, path, bname, in_rep, in_stack, anc = stack.pop()
    yield NodeVisit(node, path, bname, in_rep, in_stack, anc)
    children: list[tuple[nodes.NodeBase, Path, str, bool, bool, tuple[int, ...]]] = []
    sub_anc = anc + (id(node),)
    if isinstance(node, nodes.Repeat):
      own = getattr(node.layer, "name", None)
      seg = own if own is not None else node.layer.type
      if node.stack:
        children.append((node.layer, path + ("layer",), join(bname, seg), True, True, sub_anc))
      else:
        copies = range(node.count) if expand_repeats else range(1)
        for i in copies:
          children.append((node.layer, path + ("layer",), join(bname, f"{seg}_{i}"), True, in_stack, sub_anc))
    elif isinstance(node, nodes.NamedGroup):
      for i, item in enumerate(node.layers):
        children.append((item, path + ("layers", i), child_name(bname, f"{item.type}_{i}", item), in_rep, in_stack, sub_anc))
    else:
      for rel, default, child in node.child_items():
        children.append((child, path + rel, child_name(bname, default, child), in_rep, in_stack, sub_anc))
    stack.extend(reversed(children))


def semantic_issues(spec: Any, name: str | None = None) -> list[SpecIssue]:
  """Checks ids, `Ref`s, `EmbeddingDecode.table` and parameter-label uniqueness."""
  locator = locator_of(spec)
  issues: list[SpecIssue] = []
  ids: dict[str, NodeVisit] = {}
  label_owner: dict[str, Path] = {}
  prefix_owner: list[tuple[str, Path]] = []
  all_ids = {v.node.id for v in walk(spec, name) if isinstance(v.node, nodes.LayerNode) and v.node.id}

  for visit in walk(spec, name, expand_repeats=True):
    node, path = visit.node, visit.path
    if isinstance(node, nodes.Ref):
      target = ids.get(node.id)
      if target is None:
        if node.id in all_ids:
          issues.append(locator.issue(
              "bad_reference",
              f"Ref {node.id!r} refers to a node defined later (or around it); define the node before using it",
              path + ("id",)))
        else:
          issues.append(locator.issue(
              "bad_reference", f"unknown id {node.id!r} in Ref" + suggest(node.id, all_ids), path + ("id",)))
      elif id(target.node) in visit.ancestors:
        issues.append(locator.issue(
            "reference_cycle", f"reference cycle: Ref {node.id!r} is inside the node it refers to",
            path + ("id",)))
      elif visit.in_stack and not target.in_stack:
        issues.append(locator.issue(
            "bad_reference", f"Ref {node.id!r} inside a stacked Repeat cannot share a layer from outside it",
            path + ("id",)))
      continue
    if isinstance(node, nodes.EmbeddingDecode):
      target = ids.get(node.table)
      if target is None:
        issues.append(locator.issue(
            "bad_reference",
            f"unknown EmbeddingLookup id {node.table!r}" + suggest(node.table, all_ids)
            + ("" if node.table not in all_ids else " (it must be defined before this node)"),
            path + ("table",)))
      elif not isinstance(target.node, nodes.EmbeddingLookup):
        issues.append(locator.issue(
            "bad_reference", f"id {node.table!r} names a {target.node.type}, not an EmbeddingLookup",
            path + ("table",)))
    node_id = getattr(node, "id", None)
    if node_id:
      if node_id in ids:
        if ids[node_id].node is not node:
          first = ids[node_id].path
          pos = locator.value_pos(first + ("id",))
          where = f" (first defined at line {pos[0]})" if pos else ""
          issues.append(locator.issue("duplicate_id", f"duplicate id {node_id!r}{where}", path + ("id",)))
      elif visit.in_repeat:
        issues.append(locator.issue(
            "value", f"id {node_id!r} inside a Repeat would name {('several copies')}; move it outside",
            path + ("id",)))
        ids[node_id] = visit
      else:
        ids[node_id] = visit
    shapes = labels_mod.param_shapes(node, visit.name)
    if shapes is None:
      prefix_owner.append((visit.name, path))
      continue
    for label in shapes:
      owner = label_owner.get(label)
      if owner is not None and owner != path:
        issues.append(_dup(locator, label, owner, path, node))
        break
      if owner is None:
        label_owner[label] = path
  for prefix, path in prefix_owner:
    for label, owner in label_owner.items():
      if label.startswith(prefix + ".") or label.startswith(prefix + "/"):
        issues.append(_dup(locator, label, owner, path, None))
        break
  return issues


def _dup(locator: Locator, label: str, owner: Path, path: Path, node: Any) -> SpecIssue:
  from penzai.dsl.errors import format_path

  pos = locator.value_pos(owner)
  where = f" at line {pos[0]}" if pos and pos[0] is not None else ""
  at = path + ("name",) if node is not None and getattr(node, "name", None) is not None else path
  return locator.issue(
      "duplicate_label",
      f"duplicate parameter label {label!r}: also created by {format_path(owner)}{where};"
      " give one of the nodes a different `name`",
      at,
      at_key=True,
  )


def require_valid(spec: Any, name: str | None = None) -> None:
  """Raises SpecError if the semantic rules fail."""
  issues = semantic_issues(spec, name)
  if issues:
    raise SpecError(issues)
