"""Extract one layer of a model together with the inputs it saw.

`call_and_extract_submodel` runs a full model and captures, for the selected
sublayer, a self-contained `IsolatedSubmodel`: the layer with frozen
parameters, its argument and side inputs, its output, and the state of every
`StateVariable` it touched before and after the call. The capture can be
replayed with `stateless_call` for debugging or interventions.
"""

from __future__ import annotations

from typing import Any

from penzai import pz


@pz.pytree_dataclass
class IsolatedSubmodel(pz.Struct):
  """A captured call of one sublayer, replayable in isolation.

  Replay with
  `iso.submodel.stateless_call(iso.initial_var_values, iso.saved_arg, **iso.saved_side_inputs)`,
  which reproduces `saved_output` and `final_var_values`.

  Attributes:
    submodel: The layer, with frozen parameters and other variables replaced
      by slots.
    saved_arg: The argument it was called with (variables replaced by slots).
    saved_side_inputs: The side inputs (variables replaced by slots).
    saved_output: The value the layer returned.
    initial_var_values: Frozen values of the unbound state variables just
      before the call.
    final_var_values: Their frozen values just after the call.
  """

  submodel: pz.nn.Layer
  saved_arg: Any
  saved_side_inputs: dict[str, Any]
  saved_output: Any
  initial_var_values: tuple[pz.StateVariableValue, ...] | None
  final_var_values: tuple[pz.StateVariableValue, ...] | None


@pz.pytree_dataclass
class IsolationCapturer(pz.nn.Layer):
  """Wraps a layer and records each call to it as an `IsolatedSubmodel`.

  Attributes:
    saved_calls: The list of captured calls, appended to on each call.
    wrapped: The layer being observed.
  """

  saved_calls: pz.StateVariable[list[IsolatedSubmodel]]
  wrapped: pz.nn.Layer

  def __call__(self, argument: Any, /, **side_inputs: Any) -> Any:
    """Runs the wrapped layer and records the call."""
    frozen = pz.freeze_params(self.wrapped)
    (stateless_sub, stateless_arg, stateless_side), variables = (
        pz.unbind_variables((frozen, argument, side_inputs))
    )
    state_vars: list[pz.StateVariable[Any]] = []
    for var in variables:
      if not isinstance(var, pz.StateVariable):
        raise ValueError(
            "Expected all variables to be either Parameters or StateVariables,"
            f" but got {var}"
        )
      state_vars.append(var)
    initial = tuple(var.freeze() for var in state_vars)
    result = frozen(argument, **side_inputs)
    final = tuple(var.freeze() for var in state_vars)
    self.saved_calls.value = self.saved_calls.value + [
        IsolatedSubmodel(
            submodel=stateless_sub,
            saved_arg=stateless_arg,
            saved_side_inputs=stateless_side,
            saved_output=result,
            initial_var_values=initial,
            final_var_values=final,
        )
    ]
    return result


def call_and_extract_submodel(
    submodel_selection: pz.Selection[pz.nn.Layer],
    argument: Any,
    /,
    **side_inputs: Any,
) -> IsolatedSubmodel | list[IsolatedSubmodel]:
  """Calls the full model and captures the selected sublayer's call(s).

  Args:
    submodel_selection: A selection of exactly one sublayer, built from the
      full model (a layer).
    argument: The argument for the full model.
    **side_inputs: Side inputs for the full model.

  Returns:
    The `IsolatedSubmodel` if the sublayer ran exactly once, otherwise the
    list of captures in call order (empty if it never ran).

  Raises:
    ValueError: If the selection does not hold exactly one layer, or was not
      built from a layer.
  """
  if submodel_selection.count() != 1:
    raise ValueError("submodel_selection must contain exactly one sublayer.")
  if not isinstance(submodel_selection.get(), pz.nn.Layer):
    raise ValueError("submodel_selection must select a layer.")
  if not isinstance(submodel_selection.deselect(), pz.nn.Layer):
    raise ValueError(
        "The tree that submodule_selection was built from must be a layer."
    )
  saved_calls: pz.StateVariable[list[IsolatedSubmodel]] = pz.StateVariable([])
  capturing_model = submodel_selection.apply(
      lambda layer: IsolationCapturer(saved_calls=saved_calls, wrapped=layer)
  )
  capturing_model(argument, **side_inputs)
  calls = saved_calls.value
  if len(calls) == 1:
    return calls[0]
  return list(calls)
