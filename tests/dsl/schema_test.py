"""The committed JSON Schema and generated docs reference are up to date."""

import json
import re
import pathlib

import pytest

from penzai import dsl
from penzai.dsl import reference_doc, schema

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_committed_schema_is_current():
  committed = (ROOT / "schemas" / "model-spec.schema.json").read_text()
  assert committed == schema.schema_text(), (
      "schemas/model-spec.schema.json is stale: run `penzai schema > schemas/model-spec.schema.json`")


def test_schema_covers_every_node_type_with_descriptions():
  s = schema.json_schema()
  union = {ref["$ref"].split("/")[-1] for ref in s["$defs"]["Layer"]["oneOf"]}
  assert {"Linear", "Attention", "Repeat", "Ref", "MLP", "TransformerLlama", "TransformerGPTNeoX"} <= union
  linear = s["$defs"]["Linear"]
  assert linear["additionalProperties"] is False
  assert linear["required"][:1] == ["type"]
  assert all("description" in json.dumps(p) for p in linear["properties"].values() if p != linear["properties"]["type"])
  assert s["$defs"]["TransformerLlama"]["required"][:2] == ["type", "variant"]


def test_examples_match_schema_if_jsonschema_is_installed():
  jsonschema = pytest.importorskip("jsonschema")
  import yaml

  s = schema.json_schema()
  for path in (ROOT / "examples" / "specs").glob("*.yaml"):
    if not path.name.startswith("sweep"):
      # Quote each `${...}` so plain YAML tools read it as the string it stands for.
      text = re.sub(r"\$\{[^}]*\}", lambda m: "'" + m.group(0) + "'", path.read_text())
      jsonschema.validate(yaml.safe_load(text), s)


def test_docs_reference_is_current():
  text = (ROOT / "docs" / "dsl.md").read_text()
  assert reference_doc.update(text) == text, (
      "docs/dsl.md reference is stale: run `python -m penzai.dsl.reference_doc docs/dsl.md`")


def test_docs_reference_lists_every_field():
  text = (ROOT / "docs" / "dsl.md").read_text()
  for cls in schema.node_classes():
    for field in cls.model_fields:
      if field not in ("type", "name", "id", "variant"):
        assert f"| `{field}` |" in text, (cls.__name__, field)


def test_yaml_round_trip_of_examples():
  for path in (ROOT / "examples" / "specs").glob("*.yaml"):
    if not path.name.startswith("sweep"):
      spec = dsl.load(path)
      again = dsl.loads(dsl.dumps(spec, schema="../../schemas/model-spec.schema.json"), "again.yaml")
      assert again == spec
