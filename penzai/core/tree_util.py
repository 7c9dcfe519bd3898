"""Small PyTree utilities: one-level flattening and readable key paths."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, TypeAlias

import jax

PyTreeDef: TypeAlias = jax.tree_util.PyTreeDef


@dataclasses.dataclass(frozen=True)
class CustomGetAttrKey:
  """A subclassable stand-in for `jax.tree_util.GetAttrKey`.

  Attributes:
    name: The attribute name this key refers to.
  """

  name: str

  def __str__(self) -> str:
    return f".{self.name}"


# JAX's registry lookup, which returns None for leaves (cheaper than a
# flatten); absent in some JAX versions.
_REGISTRY_FLATTEN_ONE_LEVEL = getattr(
    jax.tree_util.default_registry, "flatten_one_level", None
)


def tree_flatten_exactly_one_level(
    tree: Any,
) -> Optional[tuple[list[tuple[Any, Any]], PyTreeDef]]:
  """Flattens a pytree by one level, treating each direct child as a leaf.

  Args:
    tree: The pytree to flatten.

  Returns:
    None if `tree` is a JAX leaf; otherwise `(keys_and_children, treedef)`,
    where `treedef.unflatten(children)` rebuilds the node from (possibly new)
    children. Childless nodes (`None`, `()`, field-less Structs) give
    `([], treedef)`.
  """
  if _REGISTRY_FLATTEN_ONE_LEVEL is not None:
    if _REGISTRY_FLATTEN_ONE_LEVEL(tree) is None:
      return None  # Fast path: not a registered pytree node.
  paths_and_children, treedef = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda node: node is not tree
  )
  if len(paths_and_children) == 1 and not paths_and_children[0][0]:
    return None  # The root itself is a leaf (its key path is empty).
  return [(path[0], child) for path, child in paths_and_children], treedef


_NAMED_ATTRIBUTE_KEY_TYPES = (
    jax.tree_util.GetAttrKey,
    jax.tree_util.FlattenedIndexKey,
    CustomGetAttrKey,
)


def pretty_keystr(keypath: tuple[Any, ...], tree: Any) -> str:
  """Renders a key path as a readable string that names the node types.

  Attribute-like keys are prefixed by the type name of the node they are
  looked up in, e.g. `"Foo.sublayers[0]/Bar.body['x']"`.

  Args:
    keypath: The key path (a tuple of JAX key entries) into `tree`.
    tree: The tree the key path is relative to.

  Returns:
    The readable path string (empty for the root).

  Raises:
    KeyError: If some key in `keypath` is not a child of the node reached so
      far.
  """
  parts: list[str] = []
  node = tree
  for key in keypath:
    if isinstance(key, _NAMED_ATTRIBUTE_KEY_TYPES):
      parts.append("/")
      parts.append(type(node).__name__)
    parts.append(str(key))
    flattened = tree_flatten_exactly_one_level(node)
    children = dict(flattened[0]) if flattened is not None else {}
    if key not in children:
      raise KeyError(
          f"Key {key!r} is not a child of the {type(node).__name__} node at"
          f" {''.join(parts[:-1])!r}; available keys:"
          f" {list(children.keys())}"
      )
    node = children[key]
  result = "".join(parts)
  if result.startswith("/"):
    result = result[1:]
  return result
