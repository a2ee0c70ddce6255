"""The JSON Schema of specs, committed as specs/schema.json for editor completion."""

from __future__ import annotations

import json

from pipeline.spec.experiment import ExperimentSpec


def schema_text() -> str:
    schema = ExperimentSpec.model_json_schema()
    schema["title"] = "pipeline experiment spec"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
