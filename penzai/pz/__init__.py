"""The `pz` alias namespace: the most common penzai names in one place.

Usage: `from penzai import pz`. Everything here is a re-export of an object
defined elsewhere (in `penzai.core`, `penzai.nn` or `treescope`).
"""

# pylint: disable=g-importing-member,unused-import,g-bad-import-order

import typing

from treescope.context import ContextualValue as ContextualValue
from treescope.dataclass_util import (
    dataclass_from_attributes as dataclass_from_attributes,
    init_takes_fields as init_takes_fields,
)
from treescope.formatting_util import (
    color_from_string as color_from_string,
    oklch_color as oklch_color,
)

from penzai.core import named_axes as nx
from penzai.core import shapecheck as chk
from penzai.core.auto_order_types import (
    AutoOrderedAcrossTypes as AutoOrderedAcrossTypes,
)
from penzai.core.partitioning import (
    NotInThisPartition as NotInThisPartition,
    combine as combine,
)
from penzai.core.random_stream import RandomStream as RandomStream
from penzai.core.selectors import Selection as Selection, select as select
from penzai.core.struct import (
    PyTreeDataclassSafetyError as PyTreeDataclassSafetyError,
    Struct as Struct,
    StructStaticMetadata as StructStaticMetadata,
    is_pytree_dataclass_type as is_pytree_dataclass_type,
    is_pytree_node_field as is_pytree_node_field,
)
from penzai.core.syntactic_sugar import slice as slice  # pylint: disable=redefined-builtin
from penzai.core.tree_util import pretty_keystr as pretty_keystr
from penzai.core.variables import (
    AbstractVariable as AbstractVariable,
    AbstractVariableSlot as AbstractVariableSlot,
    AbstractVariableValue as AbstractVariableValue,
    AutoStateVarLabel as AutoStateVarLabel,
    Parameter as Parameter,
    ParameterSlot as ParameterSlot,
    ParameterValue as ParameterValue,
    ScopedStateVarLabel as ScopedStateVarLabel,
    StateVariable as StateVariable,
    StateVariableSlot as StateVariableSlot,
    StateVariableValue as StateVariableValue,
    UnboundVariableError as UnboundVariableError,
    VariableConflictError as VariableConflictError,
    VariableLabel as VariableLabel,
    bind_variables as bind_variables,
    freeze_params as freeze_params,
    freeze_state_vars as freeze_state_vars,
    freeze_variables as freeze_variables,
    scoped_auto_state_var_labels as scoped_auto_state_var_labels,
    unbind_params as unbind_params,
    unbind_state_vars as unbind_state_vars,
    unbind_variables as unbind_variables,
    variable_jit as variable_jit,
)
from penzai.treescope._compatibility_setup import (
    disable_interactive_context as disable_interactive_context,
    enable_interactive_context as enable_interactive_context,
    show as show,
)

from penzai.pz import nn as nn
from penzai.pz import ts as ts

if typing.TYPE_CHECKING:
  import dataclasses as _dataclasses

  import typing_extensions as _typing_extensions

  @_typing_extensions.dataclass_transform(
      frozen_default=True, field_specifiers=(_dataclasses.field,)
  )
  def pytree_dataclass(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
    """Static-typing view of `penzai.core.struct.pytree_dataclass`."""
    ...

else:
  from penzai.core.struct import pytree_dataclass as pytree_dataclass

del typing
