"""Registers the built-in node types (spec class, builder, shape rule) in the registry."""

from __future__ import annotations

from penzai.dsl import builder, nodes, registry, rules
from penzai.dsl import transformer_nodes as tn


def _register() -> None:
  for cls in nodes.BUILTIN_NODE_CLASSES:
    type_name = cls.model_fields["type"].default
    registry.add_layer_type(
        registry.LayerType(type_name, cls, builder.BUILDERS[type_name], rules.RULES[type_name]), replace=True
    )
  registry.add_layer_type(
      registry.LayerType("Transformer", tn.TransformerLlama, builder.BUILDERS["Transformer"], rules.RULES["Transformer"]),
      replace=True,
  )
  registry.add_variant("Transformer", "variant", tn.TRANSFORMER_VARIANTS)


if "Sequential" not in registry.layer_types():
  _register()
