"""The static named-axis checker and the `jax.eval_shape` deep check.

`check(spec)` runs every node's shape rule over symbolic shapes, reporting all
problems at once as a `SpecError`; on success it returns a `CheckReport` with
each node's output shape and parameter count. `check(spec, deep=True)` also
builds and calls the model under `jax.eval_shape` (nothing is allocated), with
each free symbol given a distinct prime size, and requires the real output to
match the static result.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from penzai.dsl import labels as labels_mod
from penzai.dsl import nodes, registry, semantics
from penzai.dsl.errors import Path, ShapeError, SpecError, SpecIssue, format_path
from penzai.dsl.shapes import UNKNOWN, Bindings, TensorShape, Unknown

Value = Any  # TensorShape | tuple[Value, ...] | Unknown


@dataclasses.dataclass(frozen=True)
class NodeReport:
  """Static facts about one node: where it is, what it outputs, its parameters."""

  path: str
  type: str
  name: str
  output: str
  params: int | None


@dataclasses.dataclass
class CheckReport:
  """Result of `check`: the inferred output, per-node reports, totals."""

  output: Value
  nodes: list[NodeReport]
  total_params: int
  bindings: dict[str, int | str]
  labels: dict[str, dict[str, int]]

  def table(self) -> str:
    """A plain-text table: node path, type, output named shape, parameter count."""
    rows = [("path", "type", "output", "params")]
    for n in self.nodes:
      rows.append((n.path, n.type, n.output, "?" if n.params is None else f"{n.params:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"total parameters: {self.total_params:,}")
    lines.append(f"output: {format_value(self.output)}")
    return "\n".join(lines)


def _has_unknown(value: Value) -> bool:
  if isinstance(value, tuple):
    return any(_has_unknown(v) for v in value)
  return isinstance(value, Unknown)


def format_value(value: Value) -> str:
  """Renders a static value (shape, tuple of shapes, or unknown)."""
  if isinstance(value, tuple):
    return "(" + ", ".join(format_value(v) for v in value) + ")"
  return str(value)


class CheckContext:
  """State of one static check: symbol bindings, side inputs, ids, collected issues."""

  def __init__(self, spec: Any, locator: Any):
    self.spec = spec
    self.locator = locator
    self.bindings = Bindings()
    self.issues: list[SpecIssue] = []
    self.reports: list[NodeReport] = []
    self.ids: dict[str, tuple[nodes.NodeBase, Path, str]] = {}
    self.side_inputs: dict[str, TensorShape] = {}
    self.labels: dict[str, dict[str, int]] = {}
    self.stack_axes: dict[str, int] = {}
    self._quiet = 0

  # -- traversal -------------------------------------------------------------

  def apply(self, node: nodes.NodeBase, value: Value, path: Path, name: str) -> Value:
    """Runs `node`'s shape rule on `value`; records issues and the node report."""
    entry = registry.layer_types().get(node.type)
    node_id = getattr(node, "id", None)
    if node_id and node_id not in self.ids:
      self.ids[node_id] = (node, path, name)
    slot = len(self.reports)
    if not self._quiet:
      self.reports.append(None)  # type: ignore[arg-type]  # filled below (pre-order table)
    out: Value
    if entry is None or entry.shape_rule is None:
      out = UNKNOWN
    elif _has_unknown(value) and not isinstance(node, (nodes.Sequential, nodes.NamedGroup)):
      self._quiet += 1
      try:
        out = entry.shape_rule(node, value, self, path, name)
      except ShapeError:
        out = UNKNOWN
      finally:
        self._quiet -= 1
      out = UNKNOWN
    else:
      try:
        out = entry.shape_rule(node, value, self, path, name)
      except ShapeError as e:
        self.error(e, path)
        out = UNKNOWN
    if not self._quiet:
      shapes = labels_mod.param_shapes(node, name) if not isinstance(node, nodes.Ref) else {}
      count: int | None = None
      if shapes is not None:
        if self.stack_axes:
          shapes = {k: {**self.stack_axes, **v} for k, v in shapes.items()}
        self.labels.update(shapes)
        count = labels_mod.count(shapes)
      self.reports[slot] = NodeReport(format_path(path), node.type, name, format_value(self.concrete(out)), count)
    return out

  def apply_quiet(self, node: nodes.NodeBase, value: Value, path: Path, name: str) -> Value:
    """Like `apply` without reports or parameter counting (for shared layers)."""
    self._quiet += 1
    try:
      return self.apply(node, value, path, name)
    finally:
      self._quiet -= 1

  def error(self, e: ShapeError, path: Path) -> None:
    if self._quiet > 1:
      return
    where = path + (e.field,) if e.field else path
    self.issues.append(self.locator.issue(e.kind, e.message, where, at_key=bool(e.field)))

  def concrete(self, value: Value) -> Value:
    if isinstance(value, TensorShape):
      return self.bindings.concrete(value)
    if isinstance(value, tuple):
      return tuple(self.concrete(v) for v in value)
    return value

  # -- helpers used by rules ---------------------------------------------------

  def unify(self, a: Any, b: Any, origin_a: str, origin_b: str, what: str, field: str | None = None) -> None:
    try:
      self.bindings.unify(a, b, origin_a, origin_b, what)
    except ShapeError as e:
      e.field = field
      raise

  def user_rule(self, rule: Callable[..., Any], spec: Any, value: Value) -> Value:
    """Calls a user shape rule with concrete-as-possible shapes."""
    if not isinstance(value, TensorShape):
      raise ShapeError(f"{spec.type} expects a single named array, got {format_value(value)}")
    sides = {k: self.bindings.concrete(v) for k, v in self.side_inputs.items()}
    out = rule(spec, self.bindings.concrete(value), sides)
    if isinstance(out, dict):
      out = TensorShape(out, value.dtype)
    if not isinstance(out, TensorShape):
      raise ShapeError(f"shape rule of {spec.type} returned {out!r}, not a TensorShape")
    return out


def _input_shape(spec: Any, tensor: Any, origin: str) -> TensorShape:
  named = dict(tensor.named_shape)
  return TensorShape(named, tensor.dtype, {k: f"{origin}.{k}" for k in named})


def static_check(spec: Any, name: str | None = None) -> CheckReport:
  """Runs the semantic rules and the static shape checker; raises SpecError on problems."""
  from penzai.dsl import builtins  # noqa: F401

  locator = semantics.locator_of(spec)
  issues = semantics.semantic_issues(spec, name)
  ctx = CheckContext(spec, locator)
  x = _input_shape(spec, spec.input, "input.named_shape")
  ctx.side_inputs = {
      k: _input_shape(spec, v, f"side_inputs.{k}.named_shape") for k, v in spec.side_inputs.items()
  }
  if not issues:
    out = ctx.apply(spec.model, x, ("model",), semantics.root_name(spec, name))
    issues.extend(ctx.issues)
  else:
    out = UNKNOWN
  if issues:
    raise SpecError(sorted(issues, key=lambda i: (i.line or 0, i.column or 0)))
  bindings = {}
  for sym in _symbols(spec):
    bindings[sym] = ctx.bindings.resolve(sym)
  total = sum(r.params or 0 for r in ctx.reports)
  return CheckReport(ctx.concrete(out), ctx.reports, total, bindings, ctx.labels)


def _symbols(spec: Any) -> list[str]:
  syms: list[str] = []
  for tensor in [spec.input, *spec.side_inputs.values()]:
    for size in tensor.named_shape.values():
      if isinstance(size, str) and size not in syms:
        syms.append(size)
  return syms


_PRIMES = [p for p in range(11, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]


def symbol_sizes(spec: Any, report: CheckReport) -> dict[str, int]:
  """Distinct prime sizes for the free symbols (avoiding every fixed size in the spec)."""
  used: set[int] = set()
  for tensor in [spec.input, *spec.side_inputs.values()]:
    used.update(v for v in tensor.named_shape.values() if isinstance(v, int))
  for shape in report.labels.values():
    used.update(shape.values())
  used.update(v for v in report.bindings.values() if isinstance(v, int))
  primes = (p for p in _PRIMES if p not in used)
  sizes: dict[str, int] = {}
  reps: dict[str, int] = {}
  for sym, val in report.bindings.items():
    if isinstance(val, int):
      sizes[sym] = val
    else:
      if val not in reps:
        reps[val] = next(primes)
      sizes[sym] = reps[val]
  return sizes


def example_inputs(spec: Any, sizes: dict[str, int], abstract: bool = True, seed: int = 0) -> tuple[Any, dict[str, Any]]:
  """Input and side inputs of the declared contracts (abstract or random)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from penzai.core import named_axes as nx

  rng = np.random.default_rng(seed)

  def make(tensor: Any, positions: bool = False) -> Any:
    named = {k: (v if isinstance(v, int) else sizes[v]) for k, v in tensor.named_shape.items()}
    shape = tuple(named.values())
    dtype = jnp.dtype(tensor.dtype)
    if abstract:
      return (jax.ShapeDtypeStruct(shape, dtype), tuple(named))
    if positions and "seq" in named and jnp.issubdtype(dtype, jnp.integer):
      seq_index = list(named).index("seq")
      data = jnp.asarray(np.broadcast_to(
          np.arange(named["seq"]).reshape([-1 if i == seq_index else 1 for i in range(len(shape))]), shape
      ).astype(dtype))
    elif jnp.issubdtype(dtype, jnp.integer):
      data = jnp.asarray(rng.integers(0, 2, size=shape), dtype=dtype)
    elif dtype == jnp.bool_:
      data = jnp.asarray(rng.integers(0, 2, size=shape).astype(bool))
    else:
      data = jnp.asarray(rng.standard_normal(size=shape), dtype=dtype)
    return nx.wrap(data).tag(*named) if named else nx.wrap(data)

  x = make(spec.input)
  sides = {k: make(v, positions=True) for k, v in spec.side_inputs.items()}
  return x, sides


def random_stream_side_inputs(model: Any) -> dict[str, Any]:
  """A `pz.RandomStream` for every side input a StochasticDropout reads."""
  import jax

  from penzai import pz

  names = {
      layer.random_stream_input_name
      for layer in pz.select(model).at_instances_of(pz.nn.StochasticDropout).get_sequence()
  }
  return {n: pz.RandomStream.from_base_key(jax.random.key(0)) for n in names}


def _real_structure(out: Any) -> Any:
  from penzai.core import named_axes as nx

  if isinstance(out, tuple):
    return tuple(_real_structure(o) for o in out)
  if isinstance(out, nx.NamedArrayBase):
    if out.positional_shape:
      return ("positional", out.positional_shape, dict(out.named_shape), str(out.dtype))
    return TensorShape({str(k): int(v) for k, v in out.named_shape.items()}, str(out.dtype))
  return ("unexpected", type(out).__name__)


def deep_check(spec: Any, report: CheckReport, name: str | None = None) -> None:
  """Builds and runs the model under `jax.eval_shape` and compares with `report`."""
  import jax

  from penzai.dsl import builder as build_mod

  from penzai.core import named_axes as nx

  sizes = symbol_sizes(spec, report)
  x_abs, sides_abs = example_inputs(spec, sizes, abstract=True)
  names = {k: v[1] for k, v in sides_abs.items()}

  def run(key: Any, x_data: Any, side_data: dict[str, Any]) -> Any:
    x = nx.wrap(x_data).tag(*x_abs[1]) if x_abs[1] else nx.wrap(x_data)
    sides = {k: (nx.wrap(v).tag(*names[k]) if names[k] else nx.wrap(v)) for k, v in side_data.items()}
    model = build_mod.build_unchecked(spec, init_base_rng=key, name=name)
    extra = random_stream_side_inputs(model)
    return model(x, **sides, **extra)

  locator = semantics.locator_of(spec)
  try:
    real = jax.eval_shape(run, jax.random.key(0), x_abs[0], {k: v[0] for k, v in sides_abs.items()})
  except Exception as e:  # the model raised while tracing: report it as a spec error
    raise SpecError([locator.issue(
        "deep_check", f"building or running the model failed under jax.eval_shape: {type(e).__name__}: {e}",
        ("model",))]) from None
  expected = _substitute(report.output, sizes)
  got = _real_structure(real)
  if not _same(expected, got):
    raise SpecError([locator.issue(
        "deep_check",
        f"static checker inferred {format_value(expected)} but the built model produced {format_value(got)}"
        f" (symbol sizes used: {sizes})",
        ("model",))])


def _substitute(value: Value, sizes: dict[str, int]) -> Value:
  if isinstance(value, TensorShape):
    return TensorShape({k: (sizes.get(v, v) if isinstance(v, str) else v) for k, v in value.named_shape.items()}, value.dtype)
  if isinstance(value, tuple):
    return tuple(_substitute(v, sizes) for v in value)
  return value


def _same(a: Value, b: Value) -> bool:
  if isinstance(a, TensorShape) and isinstance(b, TensorShape):
    return dict(a.named_shape) == dict(b.named_shape) and a.dtype == b.dtype
  if isinstance(a, tuple) and isinstance(b, tuple):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  return False


def check(spec: Any, deep: bool = False, name: str | None = None) -> CheckReport:
  """Checks a spec statically (and, with `deep=True`, against `jax.eval_shape`).

  Args:
    spec: a `ModelSpec` (from `dsl.load`/`dsl.loads` or built in Python).
    deep: also build and run the model abstractly and compare shapes.
    name: build name override (default: the document name).

  Returns:
    A `CheckReport` with per-node output shapes and parameter counts.

  Raises:
    SpecError: listing every problem found.
  """
  report = static_check(spec, name)
  if deep:
    deep_check(spec, report, name)
  return report
