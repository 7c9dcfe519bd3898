"""Selections: functional "views" of parts of a pytree that can be modified.

`select(tree)` selects the whole tree; methods like `at_instances_of` narrow
the selection, and `set`/`apply`/... return a modified copy of the full tree.
A `Selection` stores the selected subtrees by key path plus the rest of the
tree (the *remainder*) in which every selected subtree is replaced by a
`SelectionHole`.

All building operations flatten each tree a constant number of times, so
they run in time linear in the size of the tree.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import inspect
import sys
import threading
from typing import (
    Any,
    Callable,
    Collection,
    Generic,
    Iterable,
    Iterator,
    Literal,
    Mapping,
    Sequence,
    TypeVar,
    overload,
)
import warnings

import jax
import numpy as np

from penzai.core import partitioning
from penzai.core import struct
from penzai.core import tree_util

KeyPath = tuple[Any, ...]
SelectedSubtree = TypeVar("SelectedSubtree")
OtherSubtree = TypeVar("OtherSubtree")
T = TypeVar("T")


def _shift_negative_indices(
    indices: Iterable[int], shift: int
) -> tuple[int, ...]:
  """Adds `shift` to every negative index (once); keeps the others."""
  return tuple(index + shift if index < 0 else index for index in indices)


@struct.pytree_dataclass
class SelectionHole(struct.Struct):
  """Placeholder for a selected subtree inside `Selection.remainder`.

  Attributes:
    path: Key path of the removed subtree; its key in `selected_by_path`.
  """

  path: KeyPath = dataclasses.field(metadata={"pytree_node": False})


@struct.pytree_dataclass
class SelectionQuote(struct.Struct):
  """Escapes a pre-existing hole or quote inside a selection's remainder.

  Only holes belonging to *this* selection are filled by `deselect`; holes of
  other (e.g. enclosing) selections are quoted once and unquoted on deselect.

  Attributes:
    quoted: The escaped hole or quote.
  """

  quoted: SelectionHole | SelectionQuote = dataclasses.field(
      metadata={"pytree_node": False}
  )


def _is_hole_or_quote(node: Any) -> bool:
  """Whether `node` is a `SelectionHole` or `SelectionQuote`."""
  return isinstance(node, (SelectionHole, SelectionQuote))


class _InProgressSelectionBoundary:
  """Temporary marker (a JAX leaf) wrapping a subtree that will be selected."""

  __slots__ = ("value",)

  def __init__(self, value: Any):
    self.value = value


class _LeafWrapper:
  """Unique wrapper for leaves/childless nodes, located by identity in `at`."""

  __slots__ = ("value",)

  def __init__(self, value: Any):
    self.value = value


class _SpliceMarker:
  """Temporary marker (a JAX leaf): items to splice into a list or tuple."""

  __slots__ = ("items",)

  def __init__(self, items: list[Any]):
    self.items = items


def _is_boundary_hole_or_quote(node: Any) -> bool:
  return isinstance(
      node, (_InProgressSelectionBoundary, SelectionHole, SelectionQuote)
  )


_SELECTION_ERROR_MESSAGE = (
    "An error occurred while building a Selection. This can happen when"
    " PyTree nodes make assumptions about the types of their children, since"
    " Selections replace subtrees with sentinel elements. It can also happen"
    " if the value being selected isn't a valid JAX PyTree (in which case"
    " `jax.tree_utils.tree_flatten` will also fail)."
)

_PARTIAL_ERROR_PARAGRAPH = (
    "\n\nThe tree contains a `jax.tree_util.Partial`. A Partial's pytree"
    " children are its bound arguments, and rebuilding it with sentinel"
    " elements in place of those arguments (or of its function) can fail."
    " Consider selecting the Partial node as a whole instead of its"
    " contents, or converting it to a penzai Struct."
)

_wrapping_state = threading.local()


def _contains_partial(tree: Any) -> bool:
  """Best-effort check for a `jax.tree_util.Partial` anywhere in `tree`."""
  is_partial = lambda node: isinstance(node, jax.tree_util.Partial)
  try:
    return any(
        is_partial(leaf)
        for leaf in jax.tree_util.tree_leaves(tree, is_leaf=is_partial)
    )
  except Exception:  # pylint: disable=broad-exception-caught
    return False


@contextlib.contextmanager
def _wrap_selection_errors(tree: Any) -> Iterator[None]:
  """Converts any exception into the documented selection-building ValueError.

  Only the outermost active wrapper converts, so nested wrapped operations
  keep the original exception as `__cause__`.

  Args:
    tree: The tree being processed (checked for `Partial` to explain errors).
  """
  depth = getattr(_wrapping_state, "depth", 0)
  _wrapping_state.depth = depth + 1
  try:
    yield
  except Exception as exc:  # pylint: disable=broad-exception-caught
    if depth > 0:
      raise
    message = _SELECTION_ERROR_MESSAGE
    if _contains_partial(tree):
      message += _PARTIAL_ERROR_PARAGRAPH
    raise ValueError(message) from exc
  finally:
    _wrapping_state.depth = depth


def _build_selection_from_boundary(tree: Any) -> Selection[Any]:
  """Builds a selection from a tree containing selection boundary markers.

  Every `_InProgressSelectionBoundary` becomes a selected subtree (in flatten
  order); pre-existing holes and quotes in the remainder are quoted.

  Args:
    tree: Tree containing boundary markers at the positions to select.

  Returns:
    The selection.
  """
  with _wrap_selection_errors(tree):
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=_is_boundary_hole_or_quote
    )
    selected: collections.OrderedDict[KeyPath, Any] = collections.OrderedDict()
    new_leaves: list[Any] = []
    for path, leaf in paths_and_leaves:
      if isinstance(leaf, _InProgressSelectionBoundary):
        selected[path] = leaf.value
        new_leaves.append(SelectionHole(path))
      elif isinstance(leaf, (SelectionHole, SelectionQuote)):
        new_leaves.append(SelectionQuote(leaf))
      else:
        new_leaves.append(leaf)
    remainder = jax.tree_util.tree_unflatten(treedef, new_leaves)
    return Selection(selected_by_path=selected, remainder=remainder)


def _all_prefixes(paths: Iterable[KeyPath]) -> set[KeyPath]:
  """Returns the set of proper prefixes of the given key paths."""
  prefixes: set[KeyPath] = set()
  for path in paths:
    for i in range(len(path)):
      prefixes.add(path[:i])
  return prefixes


def _mark_paths(tree: Any, paths: Collection[KeyPath]) -> Any:
  """Wraps the (outermost) subtrees at the given key paths in boundaries.

  Only nodes on the way to a target path are flattened, so the cost is
  proportional to the number of targets times their depth. Paths that do not
  exist in the tree are ignored.
  """
  targets = set(paths)
  prefixes = _all_prefixes(targets)

  def visit(node: Any, path: KeyPath) -> Any:
    if path in targets:
      return _InProgressSelectionBoundary(node)
    if path not in prefixes:
      return node
    flattened = tree_util.tree_flatten_exactly_one_level(node)
    if flattened is None:
      return node
    keys_and_children, treedef = flattened
    return treedef.unflatten(
        [visit(child, path + (key,)) for key, child in keys_and_children]
    )

  return visit(tree, ())


def _select_absolute_paths(tree: Any, paths: Collection[KeyPath]) -> Selection:
  """Selects the subtrees of `tree` at the given absolute key paths."""
  with _wrap_selection_errors(tree):
    return _build_selection_from_boundary(_mark_paths(tree, paths))


_ONE_LEVEL_FLATTEN = getattr(
    jax.tree_util.default_registry, "flatten_one_level", None
)


def _has_no_children(node: Any) -> bool:
  """Whether `node` is a JAX leaf or a pytree node without children."""
  if _ONE_LEVEL_FLATTEN is not None:
    flattened_fast = _ONE_LEVEL_FLATTEN(node)
    return flattened_fast is None or not list(flattened_fast[0])
  flattened = tree_util.tree_flatten_exactly_one_level(node)
  return flattened is None or not flattened[0]


# Whether JAX can pass key paths to `is_leaf`, which lets `at_subtrees_where`
# find outermost matches in a single (C++-driven) flatten.
_IS_LEAF_TAKES_PATH = "is_leaf_takes_path" in inspect.signature(
    jax.tree_util.tree_flatten_with_path
).parameters


def _mark_outermost_matches(
    value: Any, test: Callable[[Any, Any], bool], start: KeyPath | None
) -> Any:
  """Wraps the outermost subtrees of `value` passing `test` in boundaries.

  Uses JAX's top-down `is_leaf` traversal: a node for which `test` is true is
  treated as a leaf, so its descendants are never examined.

  Args:
    value: The tree to search.
    test: Called as `test(keypath, node)`; keypath is None if `start` is.
    start: Key path of `value` (prefixed to the relative key paths), or None
      to pass no key paths.

  Returns:
    `value` with boundary markers around the matches.
  """
  matched: set[KeyPath] = set()

  def is_leaf(path: KeyPath, node: Any) -> bool:
    keypath = None if start is None else start + path
    if test(keypath, node):
      matched.add(path)
      return True
    return False

  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(
      value, is_leaf=is_leaf, is_leaf_takes_path=True
  )
  return jax.tree_util.tree_unflatten(
      treedef,
      [
          _InProgressSelectionBoundary(leaf) if path in matched else leaf
          for path, leaf in paths_and_leaves
      ],
  )


@struct.pytree_dataclass
class Selection(Generic[SelectedSubtree], struct.Struct):
  """A selected set of non-overlapping subtrees of a pytree.

  Attributes:
    selected_by_path: The selected subtrees, keyed by their key path relative
      to the root of the full tree, in the flatten order of that tree.
    remainder: The full tree with each selected subtree replaced by a
      `SelectionHole`.
  """

  selected_by_path: collections.OrderedDict[KeyPath, SelectedSubtree]
  remainder: Any

  # Basic accessors.

  def count(self) -> int:
    """Returns the number of selected subtrees."""
    return len(self.selected_by_path)

  def __len__(self) -> int:
    return len(self.selected_by_path)

  def is_empty(self) -> bool:
    """Whether nothing is selected."""
    return not self.selected_by_path

  def get(self) -> SelectedSubtree:
    """Returns the single selected subtree (there must be exactly one)."""
    n = len(self.selected_by_path)
    if n != 1:
      raise ValueError(
          "Selection.get() can only be called on selections with one selected"
          f" element, but there were {n}. Consider using .selected_by_path"
          " instead."
      )
    return next(iter(self.selected_by_path.values()))

  def get_keypaths(self) -> tuple[KeyPath, ...]:
    """Returns the key paths of the selected subtrees, in selection order."""
    return tuple(self.selected_by_path.keys())

  def get_by_path(
      self,
  ) -> collections.OrderedDict[KeyPath, SelectedSubtree]:
    """Returns the selected subtrees keyed by key path."""
    return self.selected_by_path

  def get_sequence(self) -> tuple[SelectedSubtree, ...]:
    """Returns the selected subtrees in selection order."""
    return tuple(self.selected_by_path.values())

  def assert_count_is(self, count: int) -> Selection:
    """Asserts the number of selected subtrees (for debugging chains)."""
    assert self.count() == count
    return self

  # Rebuilding the tree.

  def deselect(self) -> Any:
    """Rebuilds the full tree, putting the selected subtrees back in place."""
    selected_by_path = self.selected_by_path

    def fill(node: Any) -> Any:
      if isinstance(node, SelectionHole):
        return selected_by_path[node.path]
      if isinstance(node, SelectionQuote):
        return node.quoted
      return node

    with _wrap_selection_errors(self):
      return jax.tree_util.tree_map(
          fill, self.remainder, is_leaf=_is_hole_or_quote
      )

  @overload
  def apply(
      self,
      fn: Callable[[SelectedSubtree], Any],
      *,
      with_keypath: Literal[False] = False,
      keep_selected: Literal[False] = False,
  ) -> Any:
    ...

  @overload
  def apply(
      self,
      fn: Callable[[KeyPath, SelectedSubtree], Any],
      *,
      with_keypath: Literal[True],
      keep_selected: Literal[False] = False,
  ) -> Any:
    ...

  @overload
  def apply(
      self,
      fn: Callable[[SelectedSubtree], OtherSubtree],
      *,
      with_keypath: Literal[False] = False,
      keep_selected: Literal[True],
  ) -> Selection[OtherSubtree]:
    ...

  @overload
  def apply(
      self,
      fn: Callable[[KeyPath, SelectedSubtree], OtherSubtree],
      *,
      with_keypath: Literal[True],
      keep_selected: Literal[True],
  ) -> Selection[OtherSubtree]:
    ...

  def apply(
      self,
      fn: Callable[..., Any],
      *,
      with_keypath: bool = False,
      keep_selected: bool = False,
  ) -> Any:
    """Applies `fn` to every selected subtree.

    Args:
      fn: Called as `fn(value)`, or `fn(keypath, value)` if `with_keypath`.
      with_keypath: Whether to pass the key path as well.
      keep_selected: Whether to return the modified Selection instead of the
        rebuilt tree.

    Returns:
      The rebuilt tree, or the modified selection if `keep_selected`.
    """
    if with_keypath:
      new_values = collections.OrderedDict(
          (path, fn(path, value))
          for path, value in self.selected_by_path.items()
      )
    else:
      new_values = collections.OrderedDict(
          (path, fn(value)) for path, value in self.selected_by_path.items()
      )
    new_selection = Selection(
        selected_by_path=new_values, remainder=self.remainder
    )
    if keep_selected:
      return new_selection
    return new_selection.deselect()

  def set(self, replacement: Any) -> Any:
    """Replaces every selected subtree with `replacement`; returns the tree."""
    return self.apply(lambda _: replacement)

  def set_by_path(
      self, replacer: Mapping[KeyPath, Any] | Callable[[KeyPath], Any]
  ) -> Any:
    """Replaces each selected subtree by `replacer[keypath]` (or its call)."""
    if callable(replacer):
      replacer = {path: replacer(path) for path in self.selected_by_path}
    new_values = collections.OrderedDict(
        (path, replacer[path]) for path in self.selected_by_path
    )
    return Selection(
        selected_by_path=new_values, remainder=self.remainder
    ).deselect()

  def select_and_set_by_path(
      self, replacements_by_path: dict[KeyPath, Any]
  ) -> Any:
    """In each selected subtree, replaces the subtrees at the given paths.

    Args:
      replacements_by_path: Replacement values keyed by key paths relative to
        each selected subtree.

    Returns:
      The rebuilt tree.
    """
    return self.apply(
        lambda value: select(value)
        .at_keypaths(replacements_by_path.keys())
        .set_by_path(replacements_by_path)
    )

  def set_sequence(self, replacements: Iterable[Any]) -> Any:
    """Replaces the selected subtrees, in order, with the given values."""
    return self.set_by_path(
        dict(zip(self.selected_by_path.keys(), replacements))
    )

  def apply_with_selected_index(
      self,
      fn: Callable[[int, SelectedSubtree], Any],
      keep_selected: bool = False,
  ) -> Any | Selection:
    """Applies `fn(index, value)` with the position of each selected subtree."""
    new_values = collections.OrderedDict(
        (path, fn(i, value))
        for i, (path, value) in enumerate(self.selected_by_path.items())
    )
    new_selection = Selection(
        selected_by_path=new_values, remainder=self.remainder
    )
    if keep_selected:
      return new_selection
    return new_selection.deselect()

  # Building new selections.

  def _rebuild_and_select(
      self, marked_values: collections.OrderedDict[KeyPath, Any]
  ) -> Selection:
    """Puts boundary-marked values back in the tree and builds a selection."""
    with _wrap_selection_errors(self):
      tree = Selection(
          selected_by_path=marked_values, remainder=self.remainder
      ).deselect()
      return _build_selection_from_boundary(tree)

  def _select_subset(self, keep: Collection[KeyPath]) -> Selection:
    """Keeps only the selected subtrees whose key paths are in `keep`."""
    with _wrap_selection_errors(self):
      return _select_absolute_paths(self.deselect(), keep)

  def flatten_selected_selections(self) -> Selection:
    """Merges selections stored as selected values into one selection."""
    with _wrap_selection_errors(self):
      marked_values: collections.OrderedDict[KeyPath, Any] = (
          collections.OrderedDict()
      )
      for path, value in self.selected_by_path.items():
        if not isinstance(value, Selection):
          raise ValueError(
              "flatten_selected_selections can only be called on Selections"
              " for which all values in `.selected_by_path` are also"
              f" Selections. Got {value}"
          )
        marked_values[path] = value.apply(_InProgressSelectionBoundary)
      return self._rebuild_and_select(marked_values)

  def refine(
      self, selector_fn: Callable[[Any], Selection[OtherSubtree]]
  ) -> Selection[OtherSubtree]:
    """Replaces each selected subtree by a selection built inside it."""
    return self.apply(
        selector_fn, keep_selected=True
    ).flatten_selected_selections()

  def at(
      self,
      accessor_fn: Callable[[SelectedSubtree], Any | Collection[Any]],
      multiple: bool | None = None,
  ) -> Selection:
    """Narrows each selected subtree to the node(s) picked by `accessor_fn`.

    Args:
      accessor_fn: A purely structural function such as
        `lambda x: x.foo[3]["bar"]`, returning a node (or a collection of
        nodes if `multiple`) of its argument.
      multiple: Whether `accessor_fn` returns a collection of nodes. If None,
        a single node is assumed, falling back to a collection (deprecated).

    Returns:
      A selection of the picked nodes.
    """
    marked_values: collections.OrderedDict[KeyPath, Any] = (
        collections.OrderedDict()
    )
    for path, value in self.selected_by_path.items():
      relative_paths = _find_accessed_paths(value, accessor_fn, multiple)
      marked_values[path] = relative_paths
    with _wrap_selection_errors(self):
      for path, value in self.selected_by_path.items():
        marked_values[path] = _mark_paths(value, marked_values[path])
      return self._rebuild_and_select(marked_values)

  def at_pytree_leaves(self) -> Selection:
    """Selects every JAX leaf inside each selected subtree."""
    with _wrap_selection_errors(self):
      marked_values = collections.OrderedDict(
          (path, jax.tree_util.tree_map(_InProgressSelectionBoundary, value))
          for path, value in self.selected_by_path.items()
      )
      return self._rebuild_and_select(marked_values)

  def at_children(self) -> Selection:
    """Selects the direct children of every selected subtree."""
    with _wrap_selection_errors(self):
      marked_values: collections.OrderedDict[KeyPath, Any] = (
          collections.OrderedDict()
      )
      for path, value in self.selected_by_path.items():
        flattened = tree_util.tree_flatten_exactly_one_level(value)
        if flattened is None:
          marked_values[path] = value
        else:
          keys_and_children, treedef = flattened
          marked_values[path] = treedef.unflatten([
              _InProgressSelectionBoundary(child)
              for _, child in keys_and_children
          ])
      return self._rebuild_and_select(marked_values)

  def where(
      self, filter_fn: Callable[..., bool], *, with_keypath: bool = False
  ) -> Selection:
    """Keeps only the selected subtrees for which `filter_fn` is truthy."""
    with _wrap_selection_errors(self):
      if with_keypath:
        keep = [
            path
            for path, value in self.selected_by_path.items()
            if filter_fn(path, value)
        ]
      else:
        keep = [
            path
            for path, value in self.selected_by_path.items()
            if filter_fn(value)
        ]
      return self._select_subset(keep)

  def at_subtrees_where(
      self,
      filter_fn: Callable[..., bool],
      *,
      with_keypath: bool = False,
      absolute_keypath: bool = False,
      innermost: bool = False,
  ) -> Selection:
    """Within each selected subtree, selects the subtrees matching a filter.

    Args:
      filter_fn: Returns a `bool` for a subtree (or for `(keypath, subtree)`
        if `with_keypath`).
      with_keypath: Whether to pass key paths to `filter_fn`.
      absolute_keypath: With `with_keypath`, pass key paths from the root of
        the full tree instead of from the selected subtree.
      innermost: Select matching nodes that contain no other match (only
        pytree nodes, never JAX leaves, can match), instead of the outermost
        matches.

    Returns:
      A selection of the matching subtrees.
    """
    with _wrap_selection_errors(self):

      def test(path: KeyPath | None, node: Any) -> bool:
        result = filter_fn(path, node) if with_keypath else filter_fn(node)
        if not isinstance(result, bool):
          raise TypeError(
              "Filter function for at_subtrees_where must return a bool, not"
              f" {type(result)}"
          )
        return result

      def visit_outermost(node: Any, path: KeyPath | None) -> Any:
        if test(path, node):
          return _InProgressSelectionBoundary(node)
        flattened = tree_util.tree_flatten_exactly_one_level(node)
        if flattened is None:
          return node
        keys_and_children, treedef = flattened
        if path is None:
          children = [visit_outermost(c, None) for _, c in keys_and_children]
        else:
          children = [
              visit_outermost(c, path + (k,)) for k, c in keys_and_children
          ]
        return treedef.unflatten(children)

      def visit_innermost(node: Any, path: KeyPath | None) -> tuple[Any, bool]:
        flattened = tree_util.tree_flatten_exactly_one_level(node)
        if flattened is None:
          return node, False
        keys_and_children, treedef = flattened
        found = False
        children = []
        for key, child in keys_and_children:
          new_child, child_found = visit_innermost(
              child, None if path is None else path + (key,)
          )
          children.append(new_child)
          found = found or child_found
        if found:
          return treedef.unflatten(children), True
        if test(path, node):
          return _InProgressSelectionBoundary(node), True
        return node, False

      marked_values: collections.OrderedDict[KeyPath, Any] = (
          collections.OrderedDict()
      )
      for path, value in self.selected_by_path.items():
        if not with_keypath:
          start: KeyPath | None = None
        elif absolute_keypath:
          start = path
        else:
          start = ()
        if innermost:
          marked_values[path] = visit_innermost(value, start)[0]
        else:
          if _IS_LEAF_TAKES_PATH:
            marked_values[path] = _mark_outermost_matches(value, test, start)
          else:
            marked_values[path] = visit_outermost(value, start)
      return self._rebuild_and_select(marked_values)

  def at_instances_of(
      self,
      cls: type[OtherSubtree] | tuple[type[OtherSubtree], ...],
      innermost: bool = False,
  ) -> Selection[OtherSubtree]:
    """Selects the (outermost, or innermost) subtrees of the given type(s)."""
    return self.at_subtrees_where(
        lambda subtree: isinstance(subtree, cls), innermost=innermost
    )

  def at_equal_to(self, template: OtherSubtree) -> Selection[OtherSubtree]:
    """Selects the outermost subtrees equal to `template` (not arrays)."""
    array_types: tuple[type[Any], ...] = (jax.Array, np.ndarray)
    # Named arrays can only exist once `named_axes` has been imported; looking
    # it up lazily avoids an import cycle (named_axes builds on this module's
    # dependencies).
    named_axes = sys.modules.get("penzai.core.named_axes")
    if named_axes is not None:
      array_types += (named_axes.NamedArrayBase,)
    if isinstance(template, array_types):
      raise ValueError(
          "Cannot use at_equal_to to check for equality of an array, since"
          " arrays override the == operator. Consider using"
          " `at_subtrees_where` instead."
      )
    return self.at_subtrees_where(
        lambda subtree: not isinstance(subtree, array_types)
        and bool(subtree == template)
    )

  def at_keypaths(self, keypaths: Collection[KeyPath]) -> Selection:
    """Within each selected subtree, selects the subtrees at relative paths.

    If one path is a prefix of another, only the outer subtree is selected;
    `()` selects the subtree itself. Missing paths are ignored.
    """
    with _wrap_selection_errors(self):
      targets = [tuple(keypath) for keypath in keypaths]
      marked_values = collections.OrderedDict(
          (path, _mark_paths(value, targets))
          for path, value in self.selected_by_path.items()
      )
      return self._rebuild_and_select(marked_values)

  def at_childless(self) -> Selection:
    """Selects the outermost subtrees with no children (leaves, `None`, ...)."""
    return self.at_subtrees_where(_has_no_children)

  def invert(self) -> Selection:
    """Selects the maximal subtrees that neither are nor contain a selection."""
    with _wrap_selection_errors(self):
      selected = set(self.selected_by_path.keys())
      prefixes = _all_prefixes(selected)

      def visit(node: Any, path: KeyPath) -> Any:
        if path in selected:
          return node
        if path not in prefixes:
          return _InProgressSelectionBoundary(node)
        flattened = tree_util.tree_flatten_exactly_one_level(node)
        if flattened is None:
          return node
        keys_and_children, treedef = flattened
        return treedef.unflatten(
            [visit(child, path + (key,)) for key, child in keys_and_children]
        )

      return _build_selection_from_boundary(visit(self.deselect(), ()))

  def pick_nth_selected(self, n: int | Sequence[int]) -> Selection:
    """Keeps only the selected subtrees at the given position(s).

    Negative positions count from the end; out-of-range positions select
    nothing. The result keeps tree order.
    """
    with _wrap_selection_errors(self):
      indices = (n,) if isinstance(n, int) else n
      wanted = set(_shift_negative_indices(indices, shift=self.count()))
      keep = [
          path
          for i, path in enumerate(self.selected_by_path.keys())
          if i in wanted
      ]
      return self._select_subset(keep)

  def partition(self, at_leaves: bool = False) -> tuple[Any, Any]:
    """Splits the tree into `(selected_part, remainder_part)`.

    Missing parts are `NotInThisPartition()`; `pz.combine` undoes this.

    Args:
      at_leaves: Replace individual JAX leaves rather than whole subtrees, so
        both parts keep the full tree structure.

    Returns:
      The two partitions.
    """
    sentinel = partitioning.NotInThisPartition()
    if at_leaves:
      selected_part = self.invert().at_pytree_leaves().set(sentinel)
      remainder_part = self.at_pytree_leaves().set(sentinel)
    else:
      selected_part = self.invert().set(sentinel)
      remainder_part = self.set(sentinel)
    return selected_part, remainder_part

  # List and tuple surgery.

  def apply_and_inline(
      self,
      fn: Callable[..., Iterable[Any]],
      *,
      with_keypath: bool = False,
  ) -> Any:
    """Replaces each selected list/tuple element by the items `fn` returns.

    Args:
      fn: Called as `fn(value)` (or `fn(keypath, value)` if `with_keypath`);
        its items are spliced into the parent list or tuple.
      with_keypath: Whether to pass key paths to `fn`.

    Returns:
      The rebuilt tree.
    """
    if () in self.selected_by_path:
      raise ValueError(
          "apply_and_inline requires all selected nodes to be children of"
          " lists or tuples, but the root node was selected."
      )
    child_paths_by_parent: dict[KeyPath, KeyPath] = {}
    for path in self.selected_by_path:
      child_paths_by_parent.setdefault(path[:-1], path)
    splices = collections.OrderedDict(
        (
            path,
            _SpliceMarker(
                list(fn(path, value) if with_keypath else fn(value))
            ),
        )
        for path, value in self.selected_by_path.items()
    )
    tree = Selection(selected_by_path=splices, remainder=self.remainder).deselect()
    parents = set(child_paths_by_parent)
    prefixes = _all_prefixes(parents)

    def visit(node: Any, path: KeyPath) -> Any:
      is_parent = path in parents
      if not is_parent and path not in prefixes:
        return node
      if is_parent and not isinstance(node, (list, tuple)):
        child_path = child_paths_by_parent[path]
        raise ValueError(
            "apply_and_inline requires all selected nodes to be children of"
            " lists or tuples, but the node at keypath"
            f" {jax.tree_util.keystr(child_path)} was contained in a node of"
            f" type {type(node).__name__}"
        )
      flattened = tree_util.tree_flatten_exactly_one_level(node)
      if flattened is None:
        return node
      keys_and_children, treedef = flattened
      children = [visit(child, path + (key,)) for key, child in keys_and_children]
      if not is_parent:
        return treedef.unflatten(children)
      items: list[Any] = []
      for child in children:
        if isinstance(child, _SpliceMarker):
          items.extend(child.items)
        else:
          items.append(child)
      return type(node)(items)

    return visit(tree, ())

  def remove_from_parent(self) -> Any:
    """Removes each selected subtree from its parent list or tuple."""
    return self.apply_and_inline(lambda x: ())

  def insert_after(self, value: Any, and_select: bool = False) -> Any:
    """Inserts `value` after each selected list/tuple element."""
    if and_select:
      tree = self.apply_and_inline(
          lambda x: (x, _InProgressSelectionBoundary(value))
      )
      return _build_selection_from_boundary(tree)
    return self.apply_and_inline(lambda x: (x, value))

  def insert_before(self, value: Any, and_select: bool = False) -> Any:
    """Inserts `value` before each selected list/tuple element."""
    if and_select:
      tree = self.apply_and_inline(
          lambda x: (_InProgressSelectionBoundary(value), x)
      )
      return _build_selection_from_boundary(tree)
    return self.apply_and_inline(lambda x: (value, x))

  # Rendering.

  def show_selection(self, ignore_exceptions: bool = False):
    """Displays the tree with the selected subtrees highlighted (IPython)."""
    from penzai.core._treescope_handlers import selection_rendering  # pylint: disable=import-outside-toplevel

    selection_rendering.display_selection_streaming(
        self, visible_selection=True, ignore_exceptions=ignore_exceptions
    )

  def show_value(self, ignore_exceptions: bool = False):
    """Displays the tree with the selected subtrees expanded (IPython)."""
    from penzai.core._treescope_handlers import selection_rendering  # pylint: disable=import-outside-toplevel

    selection_rendering.display_selection_streaming(
        self, visible_selection=False, ignore_exceptions=ignore_exceptions
    )

  def __treescope_root_repr__(self):
    """Root rendering: the tree with selected subtrees drawn in boxes."""
    from penzai.core._treescope_handlers import selection_rendering  # pylint: disable=import-outside-toplevel

    return selection_rendering.render_selection_to_foldable_representation(
        self, visible_selection=True
    )


def _find_accessed_paths(
    value: Any,
    accessor_fn: Callable[[Any], Any],
    multiple: bool | None,
) -> list[KeyPath]:
  """Runs `accessor_fn` on a wrapped copy of `value`; returns picked paths."""
  path_by_id: dict[int, KeyPath] = {}

  def copy(node: Any, path: KeyPath) -> Any:
    flattened = tree_util.tree_flatten_exactly_one_level(node)
    if flattened is None or not flattened[0]:
      new_node: Any = _LeafWrapper(node)
    else:
      keys_and_children, treedef = flattened
      new_node = treedef.unflatten(
          [copy(child, path + (key,)) for key, child in keys_and_children]
      )
    path_by_id[id(new_node)] = path
    return new_node

  with _wrap_selection_errors(value):
    wrapped_copy = copy(value, ())
  result = accessor_fn(wrapped_copy)
  if multiple:
    targets = list(result)
    missing = [t for t in targets if id(t) not in path_by_id]
    if missing:
      raise ValueError(
          "accessor_fn returned a value that was not found in the tree! The"
          " return value must be a collection of PyTree nodes or leaves  from"
          f" the provided argument PyTree. Missing: {missing}"
      )
    return [path_by_id[id(t)] for t in targets]
  if id(result) in path_by_id:
    return [path_by_id[id(result)]]
  if multiple is None and isinstance(result, collections.abc.Collection):
    targets = list(result)
    if all(id(t) in path_by_id for t in targets):
      warnings.warn(
          "Returning a collection of nodes from the accessor function for"
          " `Selection.at` without passing `multiple=True` is deprecated. If"
          " you intended to select multiple nodes, please pass `multiple=True`"
          " to `Selection.at`."
      )
      return [path_by_id[id(t)] for t in targets]
  raise ValueError(
      "accessor_fn returned a value that was not found in the tree! The"
      " return value must be a single PyTree node or leaf from the provided"
      f" argument PyTree. Missing: {result}"
  )


def select(tree: Any) -> Selection:
  """Selects the whole tree (a one-element selection at key path `()`)."""
  return Selection(
      selected_by_path=collections.OrderedDict({(): tree}),
      remainder=SelectionHole(path=()),
  )

