"""Spec loading: a good spec validates; each kind of bad input is one line at the right place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.spec.experiment import spec_hash
from pipeline.spec.load import SpecError, load, load_text
from pipeline.spec.schema import schema_text

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name: tiny
model:
  kind: swav
  prototypes: 20
train:
  max_epochs: 2
"""


def problems(text: str, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_text(text, "specs/x.yaml", overrides)
    return [str(p) for p in caught.value.problems]


def test_good_spec_fills_defaults():
    spec = load_text(GOOD)
    assert spec.model.prototypes == 20
    assert spec.model.temperature == 0.1
    assert spec.train.max_epochs == 2
    assert [task.kind for task in spec.downstream] == ["linear_probe", "knn", "embedding"]  # swav's defaults


def test_value_out_of_range_names_line_and_column():
    text = GOOD.replace("prototypes: 20", "prototypes: -3")
    assert problems(text) == ["specs/x.yaml:4:3: model.prototypes: must be > 0 (got -3)"]


def test_unknown_key_suggests_the_close_one():
    text = GOOD.replace("prototypes: 20", "protoypes: 20")
    assert problems(text) == [
        "specs/x.yaml:4:3: model.protoypes: unknown key; did you mean 'prototypes'?"
    ]


def test_wrong_type():
    text = GOOD.replace("max_epochs: 2", "max_epochs: many")
    [line] = problems(text)
    assert line.startswith("specs/x.yaml:6:3: train.max_epochs: ")
    assert "'many'" in line


def test_every_problem_is_reported():
    text = GOOD.replace("prototypes: 20", "prototypes: 0").replace("max_epochs: 2", "max_epochs: -1")
    assert sorted(problems(text)) == [
        "specs/x.yaml:4:3: model.prototypes: must be > 0 (got 0)",
        "specs/x.yaml:6:3: train.max_epochs: must be > 0 (got -1)",
    ]


def test_missing_required_field_points_at_its_section():
    [line] = problems("name: x\nmodel:\n  prototypes: 3\n")
    assert line.startswith("specs/x.yaml:2:1: model.kind: required, but missing; model kinds: ")
    assert problems("model:\n  kind: swav\n") == ["specs/x.yaml:1:1: name: required, but missing"]


def test_unknown_model_kind_lists_the_registered_ones():
    [line] = problems(GOOD.replace("kind: swav", "kind: swavv"))
    assert line.startswith("specs/x.yaml:3:3: model.kind: ")
    assert "swav" in line


def test_yaml_syntax_error_has_its_position():
    [line] = problems("name: x\nmodel: [kind: swav\n")
    assert line.startswith("specs/x.yaml:3:1: YAML syntax error")


def test_duplicate_keys_are_rejected():
    assert problems(GOOD + "train:\n  max_epochs: 3\n") == ["specs/x.yaml:7:1: train: duplicate key"]


def test_not_a_mapping_and_empty():
    assert "mapping" in problems("- a\n- b\n")[0]
    assert "empty" in problems("")[0]


def test_missing_file(tmp_path: Path):
    with pytest.raises(SpecError, match="no such file"):
        load(tmp_path / "nope.yaml")


def test_name_cannot_escape_the_project():
    [line] = problems(GOOD.replace("name: tiny", "name: ../../etc"))
    assert line.startswith("specs/x.yaml:1:1: name: ")


def test_unsafe_yaml_tags_are_refused():
    [line] = problems("name: !!python/object/apply:os.system ['true']\nmodel: {kind: swav}\n")
    assert "YAML" in line


def test_overrides_are_typed_and_validated():
    spec = load_text(GOOD, overrides=("train.max_epochs=7", "model.multicrop.small_crops=2",
                                      "downstream.1.k=5"))
    assert spec.train.max_epochs == 7
    assert spec.model.multicrop.small_crops == 2
    assert spec.downstream[1].k == 5
    assert problems(GOOD, ("model.prototypes=-1",)) == [
        "--set model.prototypes=-1: model.prototypes: must be > 0 (got -1)"
    ]
    assert problems(GOOD, ("model.protoypes=4",)) == [
        "--set model.protoypes=4: model.protoypes: unknown key; did you mean 'prototypes'?"
    ]
    assert "KEY=VALUE" in problems(GOOD, ("train.max_epochs",))[0]
    assert "not a section" in problems(GOOD, ("train.max_epochs.x=1",))[0]


def test_hash_identifies_the_configuration():
    base = load_text(GOOD)
    renamed = load_text(GOOD.replace("name: tiny", "name: other"))
    changed = load_text(GOOD, overrides=("model.temperature=0.2",))
    assert spec_hash(base) == spec_hash(renamed)
    assert spec_hash(base) != spec_hash(changed)
    # Writing a default out explicitly is the same configuration.
    assert spec_hash(load_text(GOOD, overrides=("model.temperature=0.1",))) == spec_hash(base)


def test_an_optional_setting_added_later_changes_no_hash():
    """A setting that is null (an option off by default) is left out of both hashes: a spec
    hashes as it did before the schema had that setting, so its earlier trainings stay current;
    set, the setting counts."""
    from pipeline.spec.experiment import digest, training_hash

    spec = load_text(GOOD)
    body = spec.model_dump(mode="json", include={"seed", "data", "model", "train", "upstream"})
    assert body["train"]["gradient_clip_norm"] is None
    older = {**body, "train": {k: v for k, v in body["train"].items()
                               if k not in ("gradient_clip_norm", "checkpoint_min_interval_s")}}
    older["data"] = {k: v for k, v in body["data"].items() if k not in ("probe_subset", "eval_subset")}
    assert digest(older) == training_hash(spec)
    assert training_hash(load_text(GOOD, overrides=("train.gradient_clip_norm=1.0",))) != training_hash(spec)
    assert digest({"a": 1, "b": None, "c": {"d": None}, "e": [{"f": None}]}) == digest({"a": 1, "c": {}, "e": [{}]})


def test_committed_schema_is_current():
    committed = (ROOT / "specs" / "schema.json").read_text()
    assert committed == schema_text(), "specs/schema.json is stale: run `pipeline schema`"
    assert "prototypes" in json.dumps(json.loads(committed))


@pytest.mark.parametrize("path", sorted((ROOT / "specs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_validate_and_reference_the_schema(path: Path):
    spec = load(path)
    assert spec.name == path.stem
    assert path.read_text().startswith("# yaml-language-server: $schema=schema.json")


def test_a_model_that_cannot_take_the_dataset_is_rejected_at_validation():
    [line] = problems("name: x\ndata: {dataset: fashion_mnist}\nmodel: {kind: cpc_sequence}\n")
    assert line.startswith("specs/x.yaml:3:1: model: kind 'cpc_sequence' takes sequence data, but data.dataset "
                           "'fashion_mnist' holds images; datasets it can take: mnist1d")
    [line] = problems("name: x\ndata: {dataset: mnist1d}\nmodel: {kind: swav}\n")
    assert "takes image data" in line
    assert "fashion_mnist" in line
    assert load_text("name: x\ndata: {dataset: mnist1d}\nmodel: {kind: cpc_sequence}\n").model.steps == 6


def test_a_patch_grid_that_does_not_fit_the_images_is_rejected_at_validation():
    [line] = problems("name: x\nmodel:\n  kind: cpc_image\n  patch: {size: 8, stride: 5}\n")
    assert line.startswith("specs/x.yaml:2:1: model: does not fit fashion_mnist (images of shape [1, 28, 28]): "
                           "patches of 8 px every 5 px do not tile")
    [line] = problems("name: x\nmodel: {kind: cpc_image, offsets: 6}\n")
    assert "at most 4" in line
    [line] = problems("name: x\ndata: {dataset: mnist1d}\nmodel: {kind: cpc_sequence, steps: 30}\n")
    assert "needs more than 30" in line


def test_a_mistyped_kind_gets_a_suggestion():
    [line] = problems("name: x\nmodel: {kind: cpc_imag}\n")
    assert "did you mean 'cpc_image'?" in line
