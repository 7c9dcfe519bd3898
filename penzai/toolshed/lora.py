"""Low-rank adaptation (LoRA) of linear layers.

`loraify_linears_in_selection` replaces each selected `pz.nn.Linear` with a
`LowRankAdapter`: the original linear plus a trainable low-rank update
`B @ A`, where `B` starts at zero so the adapted model initially computes
exactly what the original did.
"""

from __future__ import annotations

from typing import Any

import jax

from penzai import pz


@pz.pytree_dataclass(has_implicitly_inherited_fields=True)
class LowRankAdapter(pz.nn.Sequential):
  """A linear layer plus a low-rank update, with the same signature.

  Structure: `LowRankAdapter[BranchAndAddTogether([NamedGroup("Pretrained",
  [linear]), NamedGroup("Update", [LoRA_A, LoRA_B])])]`.
  """

  @classmethod
  def from_linear(
      cls,
      linear: pz.nn.Linear,
      name: str,
      init_base_rng: jax.Array | None,
      rank: int,
      lowrank_axis: str = "lowrank",
  ) -> LowRankAdapter:
    """Wraps `linear` with a zero-initialized low-rank update.

    Args:
      linear: The linear layer to adapt (its weights must be bound, as a
        Parameter or ParameterValue, to read its axes).
      name: Name prefix of the new parameters (`f"{name}/LoRA_A.weights"`
        and `f"{name}/LoRA_B.weights"`).
      init_base_rng: Base key for the new parameters, or None for slots.
      rank: Size of the low-rank axis.
      lowrank_axis: Name of the low-rank axis.

    Returns:
      The adapter; `A` is xavier-uniform initialized and `B` is zero.
    """
    input_axes = linear.input_axes
    output_axes = linear.output_axes
    parallel_axes = linear.parallel_axes
    lora_a = pz.nn.Linear.from_config(
        name=f"{name}/LoRA_A",
        init_base_rng=init_base_rng,
        input_axes=input_axes,
        output_axes={lowrank_axis: rank},
        parallel_axes=parallel_axes,
    )
    lora_b = pz.nn.Linear.from_config(
        name=f"{name}/LoRA_B",
        init_base_rng=init_base_rng,
        input_axes={lowrank_axis: rank},
        output_axes=output_axes,
        parallel_axes=parallel_axes,
        initializer=pz.nn.zero_initializer,
    )
    return cls(
        sublayers=[
            pz.nn.BranchAndAddTogether([
                pz.nn.NamedGroup("Pretrained", [linear]),
                pz.nn.NamedGroup("Update", [lora_a, lora_b]),
            ])
        ]
    )


def loraify_linears_in_selection(
    selection: pz.Selection[Any],
    rank: int,
    init_base_rng: jax.Array | None,
) -> Any:
  """Replaces every `pz.nn.Linear` in the selected subtrees with a LoRA adapter.

  Each adapter's parameters are named after the linear's key path, e.g.
  `"LoRA:MLP.sublayers[0]/Affine.sublayers[0]/LoRA_A.weights"`. Existing
  parameters are left as they are; freeze them first (`pz.freeze_params`) to
  train only the adapters.

  Args:
    selection: Selection of the parts of a model to adapt.
    rank: Rank of the low-rank updates.
    init_base_rng: Base key for the new parameters, or None for slots.

  Returns:
    The whole modified tree.
  """
  model = selection.deselect()

  def adapt(keypath: tuple[Any, ...], linear: pz.nn.Linear) -> LowRankAdapter:
    return LowRankAdapter.from_linear(
        linear,
        name="LoRA:" + pz.pretty_keystr(keypath, model),
        init_base_rng=init_base_rng,
        rank=rank,
    )

  return selection.at_instances_of(pz.nn.Linear).apply(
      adapt, with_keypath=True
  )
