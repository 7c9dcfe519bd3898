"""Convert a `flax.linen` model into a penzai layer tree.

`unflaxify_apply` traces one `module.apply(...)` call and records every
module-method call as an `InterceptedFlaxModuleMethod` layer, nested the way
the calls were nested. Each layer owns exactly the Flax variables of its own
module (params become `pz.Parameter`s, mutable collections become
`pz.StateVariable`s), so the converted model can be inspected, patched and
called like any penzai model. Lifted (transformed) Flax modules are not
supported.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.core.scope
import flax.linen
import flax.typing
import jax
import treescope.formatting_util

from penzai import pz


@pz.pytree_dataclass
class ArgsAndKwargs(pz.Struct):
  """The positional and keyword arguments of a Flax method call.

  Attributes:
    args: Positional arguments.
    kwargs: Keyword arguments.
  """

  args: tuple[Any, ...]
  kwargs: dict[str, Any]

  @classmethod
  def capture(cls, *args: Any, **kwargs: Any) -> ArgsAndKwargs:
    """Packs the given arguments: `ArgsAndKwargs.capture(x, train=False)`."""
    return cls(args=args, kwargs=kwargs)


@pz.pytree_dataclass
class InterceptedFlaxScopeData(pz.Struct):
  """The variables owned by one Flax module (not by its submodules).

  Attributes:
    parameters: The module's "params", by local name.
    variables: Mutable collections: collection -> local name -> variable.
    immutable_variables: Other collections, stored as plain values.
    rng_names: Names of the RNG streams the module consumes.
  """

  parameters: dict[str, pz.Parameter[Any]]
  variables: dict[str, dict[str, pz.StateVariable[Any]]]
  immutable_variables: dict[str, dict[str, Any]]
  rng_names: frozenset[str] = dataclasses.field(
      metadata={"pytree_node": False}
  )


@dataclasses.dataclass(frozen=True)
class FlaxVarLabel(pz.AutoOrderedAcrossTypes):
  """Label of a converted non-parameter Flax variable.

  Attributes:
    collection: The Flax collection (e.g. "batch_stats").
    name: Dotted path of the variable (e.g. "BatchNorm_0.mean").
  """

  collection: Any
  name: str


def _is_child_module(module: Any, parent: Any) -> bool:
  """Whether `module` is a direct child of the bound module `parent`."""
  return getattr(module, "parent", None) is parent


@pz.pytree_dataclass
class InterceptedFlaxModuleMethod(pz.nn.Layer):
  """One recorded method call of a Flax module, runnable as a penzai layer.

  Calls the module's method with its own variables; calls it makes on its
  direct child modules are redirected to the matching `submodule_calls`
  layers, so patching those layers changes the computation.

  Attributes:
    module: The (unbound) Flax module.
    method_name: The method that was called.
    scope_data: The variables the module owns, or None if it has none.
    submodule_calls: Layers for the calls made to child modules, keyed by
      `(call_index, f"{child_name}.{method_name}")` in call order.
  """

  module: flax.linen.Module = dataclasses.field(
      metadata={"pytree_node": False}
  )
  method_name: str = dataclasses.field(metadata={"pytree_node": False})
  scope_data: InterceptedFlaxScopeData | None
  submodule_calls: dict[tuple[int, str], pz.nn.Layer]

  def __call__(  # type: ignore[override]
      self,
      args_and_kwargs: ArgsAndKwargs,
      random_streams: dict[str, pz.RandomStream] | None = None,
      **side_inputs: Any,
  ) -> Any:
    """Runs the Flax method on the packed arguments.

    Args:
      args_and_kwargs: The method's arguments.
      random_streams: Random streams for the RNG names the module consumes.
      **side_inputs: Forwarded to the submodule layers.

    Returns:
      The method's output.

    Raises:
      ValueError: If the scope data lists "params" as a mutable collection.
      TypeError: If a needed random stream is missing.
    """
    scope_data = self.scope_data
    if scope_data is None:
      scope_data = InterceptedFlaxScopeData(
          parameters={}, variables={}, immutable_variables={},
          rng_names=frozenset(),
      )
    if random_streams is None:
      random_streams = {}
    if "params" in scope_data.variables:
      raise ValueError(
          f"InterceptedFlaxModuleMethod for {type(self.module).__name__}:"
          " 'params' cannot be a mutable state collection; parameters belong"
          " in scope_data.parameters."
      )
    flax_vars: dict[str, Any] = {
        "params": {k: p.value for k, p in scope_data.parameters.items()},
        **{
            col: {k: v.value for k, v in col_vars.items()}
            for col, col_vars in scope_data.variables.items()
        },
        **scope_data.immutable_variables,
    }
    rngs = {}
    for rng_name in sorted(scope_data.rng_names):
      if rng_name not in random_streams:
        raise TypeError(
            f"Flax module {type(self.module).__name__} (method"
            f" {self.method_name}) needs the RNG stream {rng_name!r}: pass"
            f" random_streams={{{rng_name!r}: pz.RandomStream(...)}}; got"
            f" streams for {sorted(random_streams)}."
        )
      rngs[rng_name] = random_streams[rng_name].next_key()

    call_counter = 0
    root_holder: list[Any] = []
    streams = random_streams

    def interceptor(
        next_fun: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: Any,
    ) -> Any:
      nonlocal call_counter
      if not root_holder:
        root_holder.append(context.module)
        return next_fun(*args, **kwargs)
      if not _is_child_module(context.module, root_holder[0]):
        return next_fun(*args, **kwargs)
      if context.method_name == "setup":
        return None
      key = (call_counter, f"{context.module.name}.{context.method_name}")
      call_counter += 1
      if key not in self.submodule_calls:
        raise KeyError(
            f"Flax module {type(self.module).__name__} made the call {key}"
            " that was not recorded when converting it; recorded calls:"
            f" {list(self.submodule_calls)}. The call sequence must not"
            " change between conversion and use."
        )
      sub = self.submodule_calls[key]
      return sub(
          ArgsAndKwargs(args=tuple(args), kwargs=dict(kwargs)),
          random_streams=streams,
          **side_inputs,
      )

    mutable = list(scope_data.variables)
    with flax.linen.intercept_methods(interceptor):
      result = self.module.apply(
          flax_vars,
          *args_and_kwargs.args,
          rngs=rngs,
          method=self.method_name,
          mutable=mutable,
          **args_and_kwargs.kwargs,
      )
    # With a list for `mutable` (even empty), Flax returns (output, state).
    output, new_vars = result
    for col, col_vars in scope_data.variables.items():
      new_col = new_vars.get(col, {})
      for name, var in col_vars.items():
        if name in new_col:
          var.value = new_col[name]
    return output

  def treescope_color(self) -> str:
    return treescope.formatting_util.color_from_string(
        type(self.module).__name__
    )


@dataclasses.dataclass
class _FlaxModelInterceptState:
  """Bookkeeping for one module-method call while tracing the Flax model."""

  module: Any
  unclaimed_collections: dict[str, dict[str, Any]]
  submodule_call_path: tuple[str, ...]
  intercept_counter: int = 0
  submodule_calls: dict[tuple[int, str], Any] = dataclasses.field(
      default_factory=dict
  )


def _common_prefix(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
  """The longest common prefix of two tuples."""
  n = 0
  for x, y in zip(a, b):
    if x != y:
      break
    n += 1
  return a[:n]


def _own_variables(module: Any) -> dict[str, dict[str, Any]]:
  """Variables reserved directly in `module`'s scope (not in child scopes)."""
  scope = module.scope
  owned: dict[str, dict[str, Any]] = {}
  for col, col_vars in module.variables.items():
    kept = {
        name: value
        for name, value in col_vars.items()
        if col in scope.reservations.get(name, ())
    }
    if kept:
      owned[col] = kept
  return owned


def unflaxify_apply(
    module: flax.linen.Module,
    variables: flax.typing.VariableDict,
    *dummy_args: Any,
    rngs: flax.typing.PRNGKey | flax.typing.RNGSequences | None = None,
    method: Callable[..., Any] | str | None = None,
    mutable: flax.core.scope.CollectionFilter = False,
    **dummy_kwargs: Any,
) -> InterceptedFlaxModuleMethod:
  """Converts a Flax module (with its variables) into a penzai layer.

  The call `module.apply(variables, *dummy_args, ...)` is traced abstractly;
  each module-method call becomes an `InterceptedFlaxModuleMethod`.

  Usage: `converted(unflaxify.ArgsAndKwargs.capture(x))` equals
  `module.apply(variables, x)`.

  Args:
    module: The Flax module.
    variables: Its variables (e.g. from `module.init`).
    *dummy_args: Example positional arguments for the traced call.
    rngs: RNG keys for the traced call (their names become RNG streams the
      converted layers expect in `random_streams`).
    method: The method to convert (default `__call__`).
    mutable: Collections that are mutable (they become StateVariables).
    **dummy_kwargs: Example keyword arguments for the traced call.

  Returns:
    The converted root layer, with new Parameters and StateVariables bound.
  """
  stack: list[_FlaxModelInterceptState] = []
  roots: list[InterceptedFlaxModuleMethod] = []
  # label -> first-seen concrete value (captured at call entry, outside of
  # any computation, so it is the value given in `variables`).
  param_values: dict[str, Any] = {}
  state_values: dict[FlaxVarLabel, Any] = {}
  rng_names_given = set((rngs or {}).keys()) if isinstance(rngs, dict) else (
      {"params"} if rngs is not None else set()
  )

  def interceptor(
      next_fun: Callable[..., Any],
      args: tuple[Any, ...],
      kwargs: dict[str, Any],
      context: Any,
  ) -> Any:
    if context.method_name == "setup":
      return next_fun(*args, **kwargs)
    bound = context.module
    if stack:
      parent = stack[-1]
      if bound is parent.module:
        return next_fun(*args, **kwargs)  # A method call on itself.
      if not _is_child_module(bound, parent.module):
        return next_fun(*args, **kwargs)
    path = tuple(bound.scope.path) if bound.scope is not None else ()
    # Snapshot at entry: the values given in `variables` (concrete, since
    # they are closed over by the trace), before the call mutates any.
    entry_vars = (
        {col: dict(col_vars) for col, col_vars in bound.variables.items()}
        if bound.scope is not None
        else {}
    )
    state = _FlaxModelInterceptState(
        module=bound,
        unclaimed_collections=entry_vars,
        submodule_call_path=path,
    )
    key = None
    if stack:
      parent = stack[-1]
      key = (parent.intercept_counter, f"{bound.name}.{context.method_name}")
      parent.intercept_counter += 1
    stack.append(state)
    try:
      out = next_fun(*args, **kwargs)
    finally:
      stack.pop()
    owned = _own_variables(bound)
    # Prefer the values seen at entry (concrete inputs) over traced results.
    for col, col_vars in owned.items():
      for name in col_vars:
        if name in entry_vars.get(col, {}):
          col_vars[name] = entry_vars[col][name]
    params_group, mutable_group, immutable_group = (
        flax.core.scope.group_collections(owned, ["params", mutable, True])
    )
    prefix = "".join(f"{p}." for p in path)
    parameters: dict[str, Any] = {}
    for name, value in params_group.get("params", {}).items():
      label = prefix + name
      param_values.setdefault(label, value)
      parameters[name] = pz.ParameterSlot(label)
    state_vars: dict[str, dict[str, Any]] = {}
    for col, col_vars in mutable_group.items():
      state_vars[col] = {}
      for name, value in col_vars.items():
        var_label = FlaxVarLabel(collection=col, name=prefix + name)
        if col in entry_vars and name in entry_vars[col]:
          state_values.setdefault(var_label, value)
          state_vars[col][name] = pz.StateVariableSlot(var_label)
    rng_used = frozenset(
        name
        for name in rng_names_given
        if bound.scope is not None and bound.scope.rng_counters.get(name, 0) > 0
    )
    scope_data: InterceptedFlaxScopeData | None
    if parameters or state_vars or immutable_group or rng_used:
      scope_data = InterceptedFlaxScopeData(
          parameters=parameters,
          variables=state_vars,
          immutable_variables=dict(immutable_group),
          rng_names=rng_used,
      )
    else:
      scope_data = None
    layer = InterceptedFlaxModuleMethod(
        module=bound.clone(_deep_clone=True, _reset_names=True, name=None),
        method_name=context.method_name,
        scope_data=scope_data,
        submodule_calls=state.submodule_calls,
    )
    if key is None:
      roots.append(layer)
    else:
      stack[-1].submodule_calls[key] = layer
    return out

  def trace() -> None:
    with flax.linen.intercept_methods(interceptor):
      module.apply(
          variables,
          *dummy_args,
          rngs=rngs or {},
          method=method,
          mutable=mutable,
          **dummy_kwargs,
      )

  jax.eval_shape(trace)
  if len(roots) != 1:
    raise ValueError(
        f"Expected exactly one top-level call of {type(module).__name__}"
        f" while tracing, but recorded {len(roots)}."
    )
  new_vars: list[Any] = [
      pz.Parameter(value=value, label=label)
      for label, value in param_values.items()
  ]
  new_vars.extend(
      pz.StateVariable(value=value, label=label)
      for label, value in state_values.items()
  )
  return pz.bind_variables(roots[0], new_vars)
