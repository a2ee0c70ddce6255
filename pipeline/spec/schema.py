"""The JSON Schema of specs, committed as specs/schema.json for editor completion."""

from __future__ import annotations

import json

from pipeline.spec.experiment import experiment_spec


def schema_text() -> str:
    """The schema of specs over every registered plugin (the committed file: this project's own)."""
    schema = experiment_spec().model_json_schema()
    schema["title"] = "pipeline experiment spec"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
