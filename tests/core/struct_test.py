"""Tests for penzai.core.struct: pytree_dataclass and Struct."""

from __future__ import annotations

import abc
import dataclasses
import inspect
import os
import subprocess
import sys
import typing
from typing import Any

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import pytest

from penzai import pz
from penzai.core import struct


@pz.pytree_dataclass
class Point(pz.Struct):
  x: Any
  y: Any
  name: str = dataclasses.field(default="p", metadata={"pytree_node": False})


@pz.pytree_dataclass
class CustomInit(pz.Struct):
  a: int
  b: int

  def __init__(self, value: int):
    self.a = value
    self.b = self.double(value)
    self.scratch = "discarded"

  def double(self, v: int) -> int:
    return 2 * v


@pz.pytree_dataclass
class Empty(pz.Struct):
  pass


# Decoration and the pytree protocol.


def test_flatten_with_path_uses_getattr_keys_and_skips_static_fields():
  p = Point(1, jnp.arange(2), name="q")
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(p)
  assert [path for path, _ in paths_and_leaves] == [
      (jax.tree_util.GetAttrKey("x"),),
      (jax.tree_util.GetAttrKey("y"),),
  ]
  rebuilt = jax.tree_util.tree_unflatten(
      treedef, [leaf for _, leaf in paths_and_leaves]
  )
  assert rebuilt.name == "q" and rebuilt.x == 1


def test_tree_flatten_aux_data_is_struct_static_metadata():
  children, aux = Point(1, 2, name="z").tree_flatten()
  assert list(children) == [1, 2]
  assert aux == pz.StructStaticMetadata(["x", "y"], {"name": "z"})
  keyed, aux2 = Point(1, 2).tree_flatten_with_keys()
  assert [k for k, _ in keyed] == [
      jax.tree_util.GetAttrKey("x"),
      jax.tree_util.GetAttrKey("y"),
  ]
  assert aux2.static_fields == {"name": "p"}


def test_tree_map_rebuilds_without_calling_custom_init():
  c = CustomInit(3)
  doubled = jax.tree_util.tree_map(lambda v: v * 10, c)
  assert type(doubled) is CustomInit
  assert (doubled.a, doubled.b) == (30, 60)


def test_static_field_is_part_of_treedef():
  assert jax.tree_util.tree_structure(
      Point(1, 2, name="a")
  ) != jax.tree_util.tree_structure(Point(1, 2, name="b"))


def test_key_for_field_override_changes_jax_keys():
  @pz.pytree_dataclass
  class Keyed(pz.Struct):
    a: int

    def key_for_field(self, field_name: str) -> str:
      return "key_" + field_name

  [(path, leaf)], _ = jax.tree_util.tree_flatten_with_path(Keyed(5))
  assert path == ("key_a",) and leaf == 5


def test_jit_roundtrip():
  p = Point(jnp.ones(2), jnp.zeros(2))
  out = jax.jit(lambda s: Point(s.y, s.x, name=s.name))(p)
  assert out.x.tolist() == [0.0, 0.0] and out.y.tolist() == [1.0, 1.0]


def test_is_pytree_dataclass_type():
  assert pz.is_pytree_dataclass_type(Point)
  assert not pz.is_pytree_dataclass_type(pz.Struct)
  assert not pz.is_pytree_dataclass_type(Point(1, 2))

  class Undecorated(Point):
    pass

  assert not pz.is_pytree_dataclass_type(Undecorated)


def test_info_attribute_contents():
  info = Point.__dict__[struct.PYTREE_DATACLASS_INFO_ATTR]
  assert struct.PYTREE_DATACLASS_INFO_ATTR == "__penzai_pytree_dataclass_info__"
  assert info["has_implicitly_inherited_fields"] is False
  assert info["use_mutable_proxy_in_init"] is True
  assert info["is_init_proxy"] is False
  assert info["generated_init"] is Point.__init__
  custom_info = CustomInit.__dict__[struct.PYTREE_DATACLASS_INFO_ATTR]
  assert custom_info["generated_init"] is None


def test_is_pytree_node_field():
  fields = {f.name: f for f in dataclasses.fields(Point)}
  assert pz.is_pytree_node_field(fields["x"])
  assert not pz.is_pytree_node_field(fields["name"])


def test_instances_are_frozen_and_hashable_by_fields():
  p = Point(1, 2)
  with pytest.raises(dataclasses.FrozenInstanceError):
    p.x = 3  # type: ignore[misc]
  assert p == Point(1, 2) and hash(p) == hash(Point(1, 2))
  with pytest.raises(TypeError):
    hash(Point({}, 1))


def test_decorator_with_options():
  @pz.pytree_dataclass(kw_only=True)
  class KwOnly(pz.Struct):
    a: int

  with pytest.raises(TypeError):
    KwOnly(1)  # type: ignore[misc]
  assert KwOnly(a=1).a == 1


def test_repr_auto_keeps_struct_repr_and_plain_classes_get_dataclass_repr():
  @pz.pytree_dataclass
  class Plain:
    a: int

    def tree_flatten_with_keys(self):
      return [(jax.tree_util.GetAttrKey("a"), self.a)], None

    @classmethod
    def tree_unflatten(cls, aux, children):
      return cls(*children)

  assert "Plain(a=1)" in repr(Plain(1))
  assert repr(Point(1, 3)) == "Point(x=1, y=3, name='p')"
  assert str(Point(1, 3)) == repr(Point(1, 3))


def test_repr_true_installs_dataclass_repr_on_struct():
  @pz.pytree_dataclass(repr=True)
  class WithRepr(pz.Struct):
    a: int

  assert repr(WithRepr(1)).endswith("WithRepr(a=1)")


# Safety checks.


def test_cannot_decorate_twice():
  with pytest.raises(ValueError, match="Cannot apply pytree_dataclass twice"):
    pz.pytree_dataclass(Point)


def test_undecorated_struct_cannot_be_instantiated():
  class Abstract(pz.Struct):
    pass

  with pytest.raises(TypeError, match="Can't instantiate abstract Struct"):
    Abstract()
  with pytest.raises(TypeError, match="must be decorated with"):
    pz.Struct()


def test_abstract_methods_still_enforced():
  class Base(pz.Struct):

    @abc.abstractmethod
    def f(self) -> int:
      ...

  @pz.pytree_dataclass
  class Concrete(Base):
    pass

  with pytest.raises(TypeError, match="Can't instantiate abstract class"):
    Concrete()


def test_overwriting_custom_parent_init_is_an_error():
  with pytest.raises(pz.PyTreeDataclassSafetyError) as info:

    @pz.pytree_dataclass(has_implicitly_inherited_fields=True)
    class Child(CustomInit):  # pylint: disable=unused-variable
      pass

  message = str(info.value)
  assert message.startswith(
      "@pytree_dataclass decorator for Child is about to overwrite an"
      f" inherited custom __init__ {CustomInit.__init__} which wasn't"
      " generated by @pytree_dataclass, but `overwrite_parent_init` is not"
      " set."
  )
  assert "overwrite_parent_init=True" in message and "init=False" in message


def test_overwrite_parent_init_allows_generated_init():
  @pz.pytree_dataclass(
      has_implicitly_inherited_fields=True, overwrite_parent_init=True
  )
  class Child(CustomInit):
    pass

  c = Child(1, 2)  # type: ignore[call-arg]
  assert (c.a, c.b) == (1, 2)


def test_inheriting_generated_init_is_fine():
  @pz.pytree_dataclass
  class Child(Point):
    x: Any
    y: Any
    name: str = dataclasses.field(default="c", metadata={"pytree_node": False})
    z: int = 0

  assert Child(1, 2).z == 0


def test_plain_parent_with_custom_init_is_protected():
  class Mixin:

    def __init__(self):
      pass

  with pytest.raises(pz.PyTreeDataclassSafetyError):

    @pz.pytree_dataclass
    class Bad(pz.Struct, Mixin):  # pylint: disable=unused-variable
      a: int


def test_implicitly_inherited_fields_require_flag():
  with pytest.raises(pz.PyTreeDataclassSafetyError) as info:

    @pz.pytree_dataclass
    class Child(Point):  # pylint: disable=unused-variable
      extra: int = 1

  assert str(info.value).startswith(
      "Child has missing or badly-ordered dataclass attributes: the explicit"
      " field annotations ['extra'] don't match the inferred dataclass fields"
      " ['x', 'y', 'name', 'extra']."
  )
  assert "\n\n" in str(info.value)
  assert "has_implicitly_inherited_fields=True" in str(info.value)


def test_badly_ordered_annotations_are_rejected():
  @pz.pytree_dataclass
  class Base(pz.Struct):
    a: int
    b: int

  with pytest.raises(
      pz.PyTreeDataclassSafetyError,
      match=r"explicit field annotations \['b', 'a'\] don't match the"
      r" inferred dataclass fields \['a', 'b'\]",
  ):

    @pz.pytree_dataclass
    class Child(Base):  # pylint: disable=unused-variable
      b: int
      a: int


def test_flag_without_inherited_fields_is_rejected():
  with pytest.raises(
      pz.PyTreeDataclassSafetyError,
      match=(
          "^Lonely was constructed with `has_implicitly_inherited_fields=True`,"
          " but it does not have any implicitly inherited fields.$"
      ),
  ):

    @pz.pytree_dataclass(has_implicitly_inherited_fields=True)
    class Lonely(pz.Struct):  # pylint: disable=unused-variable
      a: int


def test_classvar_annotations_are_ignored():
  @pz.pytree_dataclass
  class WithClassVar(pz.Struct):
    counter: typing.ClassVar[int] = 0
    a: int = 1

  assert [f.name for f in dataclasses.fields(WithClassVar)] == ["a"]


def test_non_struct_without_pytree_methods_is_rejected():
  with pytest.raises(
      AttributeError,
      match="must define both `tree_flatten_with_keys` and `tree_unflatten`",
  ):

    @pz.pytree_dataclass
    class NoMethods:  # pylint: disable=unused-variable
      a: int


# Mutable init proxy.


def test_custom_init_runs_on_mutable_proxy_and_copies_only_fields():
  c = CustomInit(4)
  assert type(c) is CustomInit and (c.a, c.b) == (4, 8)
  assert not hasattr(c, "scratch")
  proxy_cls = CustomInit._MutableInitProxy  # type: ignore[attr-defined]
  assert issubclass(proxy_cls, CustomInit)
  assert proxy_cls.__name__ == "CustomInit._MutableInitProxy"
  assert proxy_cls.__qualname__.endswith("CustomInit._MutableInitProxy")
  assert proxy_cls.__dict__[struct.PYTREE_DATACLASS_INFO_ATTR] == {
      "is_init_proxy": True
  }
  assert proxy_cls._MutableInitProxy is None


def test_wrapped_init_keeps_metadata():
  init = CustomInit.__init__
  assert init.__name__ == "__init__"
  assert init.__qualname__.endswith("CustomInit.__init__")
  assert list(inspect.signature(init).parameters) == ["self", "value"]
  assert init.__wrapped__ is not init  # type: ignore[attr-defined]


def test_self_inside_init_is_proxy_instance():
  seen = {}

  @pz.pytree_dataclass
  class Spy(pz.Struct):
    a: int

    def __init__(self):
      seen["type"] = type(self)
      seen["isinstance"] = isinstance(self, Spy)
      self.a = 1

  Spy()
  assert seen["type"] is Spy._MutableInitProxy  # type: ignore[attr-defined]
  assert seen["isinstance"]


def test_missing_field_in_init_is_an_error():
  @pz.pytree_dataclass
  class Forgetful(pz.Struct):
    a: int
    b: int

    def __init__(self):
      self.a = 1

  with pytest.raises(
      AttributeError,
      match='^A value for field "b" was not set during __init__! All'
      " dataclass fields must be set in __init__ when using"
      " `pytree_dataclass`.$",
  ):
    Forgetful()


def test_subclass_with_init_false_uses_parent_custom_init():
  @pz.pytree_dataclass(init=False, has_implicitly_inherited_fields=True)
  class Child(CustomInit):
    pass

  c = Child(5)  # type: ignore[call-arg]
  assert type(c) is Child and (c.a, c.b) == (5, 10)


def test_without_mutable_proxy_init_runs_on_frozen_instance():
  @pz.pytree_dataclass(use_mutable_proxy_in_init=False)
  class Frozen(pz.Struct):
    a: int

    def __init__(self, a: int, use_setattr: bool):
      if use_setattr:
        object.__setattr__(self, "a", a)
      else:
        self.a = a

  assert Frozen(3, True).a == 3
  assert "_MutableInitProxy" not in Frozen.__dict__
  with pytest.raises(dataclasses.FrozenInstanceError):
    Frozen(3, False)


def test_predefined_mutable_init_proxy_attribute_is_an_error():
  with pytest.raises(
      ValueError,
      match="Cannot create a mutable init proxy if the _MutableInitProxy"
      " class attribute is already defined!",
  ):

    @pz.pytree_dataclass
    class Clash(pz.Struct):  # pylint: disable=unused-variable
      a: int
      _MutableInitProxy = None

      def __init__(self):
        self.a = 1


# Struct methods.


def test_from_attributes_and_attributes_dict_roundtrip():
  c = CustomInit(2)
  attrs = c.attributes_dict()
  assert attrs == {"a": 2, "b": 4}
  assert list(Point(1, 2).attributes_dict()) == ["x", "y", "name"]
  rebuilt = CustomInit.from_attributes(**attrs)
  assert rebuilt == c and type(rebuilt) is CustomInit


def test_from_attributes_requires_exact_fields():
  with pytest.raises(ValueError) as info:
    CustomInit.from_attributes(a=1)
  assert str(info.value) == (
      "Incorrect fields provided to `from_attributes`; expected {'a', 'b'},"
      " got {'a'}"
  ) or str(info.value) == (
      "Incorrect fields provided to `from_attributes`; expected {'b', 'a'},"
      " got {'a'}"
  )


def test_select_method_selects_the_struct():
  p = Point(1, 2)
  selection = p.select()
  assert isinstance(selection, pz.Selection)
  assert selection.get_keypaths() == ((),)
  assert selection.get() is p


def test_treescope_color_default_depends_on_callability():
  assert Point(1, 2).treescope_color() == "transparent"

  @pz.pytree_dataclass
  class CallMe(pz.Struct):

    def __call__(self) -> None:
      pass

  color = CallMe().treescope_color()
  assert isinstance(color, str) and color.startswith("oklch(")
  assert color == pz.color_from_string(
      f"{CallMe.__module__}.{CallMe.__qualname__}"
  )


def test_repr_pretty_emits_full_rendering():
  class Printer:

    def __init__(self):
      self.parts: list[str] = []

    def text(self, s: str) -> None:
      self.parts.append(s)

    def break_(self) -> None:
      self.parts.append("\n")

  printer = Printer()
  Point(1, 2)._repr_pretty_(printer, False)
  assert "".join(printer.parts).startswith("Point(")


def test_empty_struct_has_no_leaves():
  assert not jax.tree_util.tree_leaves(Empty())
  assert Empty() == Empty()


def test_struct_flattening_is_linear_in_size():
  """Flattening a long chain of structs touches each struct once."""
  calls = {"n": 0}

  @pz.pytree_dataclass
  class Counting(pz.Struct):
    child: Any

    def key_for_field(self, field_name: str) -> Any:
      calls["n"] += 1
      return jax.tree_util.GetAttrKey(field_name)

  tree: Any = 0
  for _ in range(200):
    tree = Counting(tree)
  jax.tree_util.tree_flatten_with_path(tree)
  assert calls["n"] == 200


# Properties.

field_values = st.recursive(
    st.integers(-3, 3) | st.none() | st.text(max_size=2),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from("ab"), children, max_size=2),
    max_leaves=6,
)


@hypothesis.given(field_values, field_values, st.text(max_size=3))
def test_property_flatten_unflatten_and_attributes_roundtrip(x, y, name):
  p = Point(x, y, name=name)
  leaves, treedef = jax.tree_util.tree_flatten(p)
  rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
  assert rebuilt == p and type(rebuilt) is Point
  assert Point.from_attributes(**p.attributes_dict()) == p
  assert jax.tree_util.tree_leaves(p) == jax.tree_util.tree_leaves((x, y))


# Package import side effects.


def test_core_package_imports_exactly_the_documented_submodules():
  code = (
      "import penzai, penzai.core as c, types;"
      "print(sorted(n for n, v in vars(c).items()"
      " if isinstance(v, types.ModuleType)))"
  )
  # A fresh interpreter is needed to observe import side effects.
  result = subprocess.run(
      [sys.executable, "-c", code],
      capture_output=True,
      text=True,
      check=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert result.stdout.strip() == str([
      "named_axes",
      "partitioning",
      "selectors",
      "shapecheck",
      "struct",
      "syntactic_sugar",
      "tree_util",
  ])


def test_inspect_signature_of_struct_class_shows_constructor_fields():
  import inspect

  @pz.pytree_dataclass
  class Pair(pz.Struct):
    left: int
    right: str = "r"

    def __call__(self, value, /, extra=None):
      return value

  params = list(inspect.signature(Pair).parameters)
  assert params == ["left", "right"]
  # Instances still describe their own __call__.
  assert list(inspect.signature(Pair(1)).parameters) == ["value", "extra"]
