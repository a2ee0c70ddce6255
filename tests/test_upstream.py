"""Specs that build on other specs: every refusal is one line naming the spec and what to do;
dvc.yaml is made from the specs and `pipeline dvc --check` notices when it is stale."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline import plugins
from pipeline.errors import PipelineError
from pipeline.spec.experiment import training_hash
from pipeline.spec.load import SpecError, load
from pipeline.stages import dvc as generator
from pipeline.upstream import upstream
from tests.conftest import needs_fashion_mnist

BASE = "name: {name}\nmodel: {{kind: swav}}\n"


def write(project: Path, name: str, text: str) -> Path:
    path = project / "specs" / f"{name}.yaml"
    path.write_text(text)
    return path


def problem(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load(path)
    [line] = [str(p) for p in caught.value.problems]
    return line


def test_unknown_upstream_names_the_line_and_the_nearest_spec(project: Path):
    write(project, "swav_base", BASE.format(name="swav_base"))
    path = write(project, "down", "name: down\nupstream:\n  encoder: swav_bas\n")
    line = problem(path)
    assert line.startswith(f"{path}:3:3: upstream.encoder: unknown spec 'swav_bas'")
    assert "did you mean 'swav_base'?" in line


def test_a_cycle_is_refused_with_its_path(project: Path):
    write(project, "a", "name: a\nupstream: {encoder: b}\n")
    path = write(project, "b", "name: b\nupstream: {encoder: a}\n")
    assert "a cycle of upstream specs (b -> a -> b)" in problem(path)
    itself = write(project, "c", "name: c\nupstream: {encoder: c}\n")
    assert "a cycle of upstream specs (c -> c)" in problem(itself)


def test_an_encoder_that_cannot_take_the_data_is_refused(project: Path):
    write(project, "images", BASE.format(name="images"))
    path = write(project, "signals", "name: signals\ndata: {dataset: mnist1d}\nupstream: {encoder: images}\n")
    assert "images's encoder takes images of shape [1, 28, 28] (fashion_mnist), but it would be fed sequences of " \
           "shape [1, 40] from data.dataset 'mnist1d'" in problem(path)


def test_a_matcher_feeds_an_upstream_encoder_its_scenes_resized_or_is_refused(project: Path):
    write(project, "images", BASE.format(name="images"))
    matcher = ("name: m\ndata: {{dataset: fmnist_scenes}}\nupstream: {{encoder: images}}\n"
               "model: {{kind: voken_matcher{extra}}}\n")
    refused = write(project, "m", matcher.format(extra=""))
    assert "but it would be fed images of shape [1, 56, 56] from data.dataset 'fmnist_scenes'" in problem(refused)
    assert "model.upstream_side" in problem(refused)
    fitting = write(project, "m", matcher.format(extra=", upstream_side: 28"))
    assert load(fitting).model.upstream_side == 28


def test_an_upstream_that_trains_nothing_is_refused(project: Path):
    write(project, "up", BASE.format(name="up"))
    write(project, "middle", "name: middle\nupstream: {encoder: up}\n")
    path = write(project, "down", "name: down\nupstream: {encoder: middle}\n")
    assert "'middle' trains no model of its own (it uses 'up''s encoder): name that spec" in problem(path)


def test_a_task_the_model_cannot_feed_is_refused_and_unknown_tasks_list_the_tasks(project: Path):
    path = write(project, "s", BASE.format(name="s") + "downstream: [{kind: network}]\n")
    assert "'network' needs a model that provides Classifier; model kind 'swav' provides Encoder" in problem(path)
    path = write(project, "t", BASE.format(name="t") + "downstream: [{kind: mystery}]\n")
    line = problem(path)
    first = ", ".join(sorted(plugins.tasks())[:4])  # the kinds listed alphabetically, whatever is installed
    assert f"unknown kind 'mystery'; downstream task kinds: {first}" in line
    assert "swav" not in line


def test_an_upstream_not_run_not_finished_or_stale_says_what_to_run(project: Path):
    up = load(write(project, "up", BASE.format(name="up")))
    down = load(write(project, "down", "name: down\nupstream: {encoder: up}\n"))
    with pytest.raises(PipelineError, match=r"up has not been trained: .*run `pipeline pretrain specs/up.yaml`"):
        upstream(down, "encoder")
    folder = project / "artifacts" / "up" / "pretrain"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"run_id": "r0", "finished": True}))  # before training hashes
    with pytest.raises(PipelineError, match="made by an earlier version of the pipeline"):
        upstream(down, "encoder")
    record = {"run_id": "r1", "training_hash": training_hash(up), "finished": False, "input_shape": [1, 28, 28],
              "num_classes": 10}
    (folder / "run.json").write_text(json.dumps(record))
    with pytest.raises(PipelineError, match=r"did not finish \(down builds on it\): continue it with "
                                            r"`pipeline pretrain specs/up.yaml --resume`"):
        upstream(down, "encoder")
    (folder / "run.json").write_text(json.dumps({**record, "finished": True, "training_hash": "0ld"}))
    with pytest.raises(PipelineError, match="made by another configuration of up"):
        upstream(down, "encoder")
    (folder / "run.json").write_text(json.dumps({**record, "finished": True}))
    found = upstream(down, "encoder")
    assert (found.name, found.run_id, found.input_shape) == ("up", "r1", (1, 28, 28))


def test_a_training_hashed_by_an_older_pipeline_counts_by_the_spec_saved_with_it(project: Path):
    """run.json's hash was computed by the pipeline of its day; the spec saved beside the weights is
    what made them: hashed the current way it decides, so a new optional setting or a new way of
    hashing does not make every earlier training stale, while another configuration still does."""
    from pipeline.spec.load import dump

    up = load(write(project, "up", BASE.format(name="up")))
    down = load(write(project, "down", "name: down\nupstream: {encoder: up}\n"))
    folder = project / "artifacts" / "up" / "pretrain"
    folder.mkdir(parents=True)
    record = {"run_id": "r1", "training_hash": "hashed-otherwise", "finished": True, "input_shape": [1, 28, 28],
              "num_classes": 10}
    (folder / "run.json").write_text(json.dumps(record))
    (folder / "spec.yaml").write_text(dump(up))
    assert upstream(down, "encoder").run_id == "r1"
    (folder / "spec.yaml").write_text(dump(up.model_copy(update={"seed": 7})))
    with pytest.raises(PipelineError, match="made by another configuration of up"):
        upstream(down, "encoder")
    (folder / "spec.yaml").write_text("not: [a spec")  # unreadable: the recorded hash decides
    with pytest.raises(PipelineError, match="training hash hashed-otherwise"):
        upstream(down, "encoder")


def test_dvc_yaml_is_made_from_the_specs_and_check_notices_staleness(project: Path):
    write(project, "up", BASE.format(name="up"))
    write(project, "down", "name: down\nupstream: {encoder: up}\n")
    target = project / "dvc.yaml"
    generator.write(project / "specs", target)
    assert generator.write(project / "specs", target, check=True)
    import yaml

    stages = yaml.safe_load(target.read_text())["stages"]
    assert set(stages["pretrain"]["foreach"]) == {"up"}  # down trains nothing of its own
    assert stages["evaluate"]["foreach"]["down"]["encoder"] == "artifacts/up/pretrain"
    # A project outside the package's checkout cannot name its code as DVC dependencies.
    assert stages["evaluate"]["do"]["deps"] == ["${item.data}", "${item.encoder}"]
    assert "code" not in stages["evaluate"]["foreach"]["up"] and "fingerprint" not in stages
    write(project, "other", BASE.format(name="other"))
    assert not generator.write(project / "specs", target, check=True)
    write(project, "renamed", BASE.format(name="not_renamed"))
    with pytest.raises(PipelineError, match="name 'not_renamed' differs from the file name"):
        generator.generate(project / "specs")


def test_the_committed_dvc_yaml_is_current_and_lists_the_code_each_stage_depends_on():
    import yaml

    root = Path(__file__).resolve().parent.parent
    assert generator.write(root / "specs", root / "dvc.yaml", check=True), "dvc.yaml is stale: run `pipeline dvc`"
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for stage in ("pretrain", "evaluate"):  # the code through its fingerprint (tests/test_dvc.py)
        assert "${item.code}" in stages[stage]["do"]["deps"]
    code = stages["fingerprint"]["deps"]
    assert {"pipeline/evaluators", "pipeline/upstream.py", "pipeline/stages/train.py", "pipeline/data"} <= set(code)
    assert "pipeline/cli.py" not in str(stages)
    assert "pipeline/tracking.py" not in str(stages)
    generator.fingerprint(code, root)  # every listed path exists


def test_a_code_change_changes_the_fingerprint_and_caches_do_not(tmp_path: Path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = generator.fingerprint(["pkg"], tmp_path)
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"cache")
    assert generator.fingerprint(["pkg"], tmp_path) == before
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert generator.fingerprint(["pkg"], tmp_path) != before


def test_a_spec_of_nested_aliases_is_refused_at_once(tmp_path: Path):
    """Eight levels of lists, each repeating the one before nine times: 400 bytes that expand to
    ~10^8 values. Refused in well under a second, in one line."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    line = problem(path)
    assert time.perf_counter() - started < 1.0
    assert "expands to more than 100,000 values through YAML aliases" in line


@pytest.mark.slow
@needs_fashion_mnist
def test_an_upstream_registered_in_mlflow_is_downloaded_and_used(fmnist: Path):
    """`tracking.register_as` registers the trained weights; a spec elsewhere names them as
    `models:/<name>/<version>` and gets the same weights, spec and run, without the folder."""
    import shutil

    import torch

    from pipeline import stages
    from pipeline.spec.load import load_text
    from tests.conftest import tiny_spec

    spec = load_text(tiny_spec("shared", images=128) + "tracking: {register_as: shared_encoder}\n")
    result = stages.pretrain(spec)
    assert result["registered_as"] == "models:/shared_encoder/1"
    trained = torch.load(fmnist / "artifacts" / "shared" / "pretrain" / "encoder.pt", weights_only=True)
    shutil.rmtree(fmnist / "artifacts" / "shared")  # another machine: only the MLflow server is shared

    down = load_text("name: down\nupstream: {encoder: 'models:/shared_encoder/1'}\n")
    found = upstream(down, "encoder")
    assert (found.name, found.run_id) == ("shared", result["run_id"])
    model, _ = found.models()
    assert all(torch.equal(trained[k], v) for k, v in model.encoder.state_dict().items())
    missing = load_text("name: down\nupstream: {encoder: 'models:/nobody/3'}\n")
    with pytest.raises(PipelineError, match="down: upstream models:/nobody/3 is not in the model registry"):
        upstream(missing, "encoder")


def test_a_dataset_another_spec_writes_must_exist_and_fit_the_model(project: Path):
    write(project, "plain", BASE.format(name="plain"))
    path = write(project, "reader", "name: reader\ndata: {dataset: upstream}\nupstream: {data: plain}\n"
                                    "model: {kind: swav}\n")
    message = "'plain' writes no dataset: none of its downstream tasks does (export_features, vokenize do)"
    assert message in problem(path)
    write(project, "exporter", BASE.format(name="exporter") + "downstream: [{kind: export_features}]\n")
    path = write(project, "reader", "name: reader\ndata: {dataset: upstream}\nupstream: {data: exporter}\n"
                                    "model: {kind: swav}\n")
    assert "'exporter' writes vector data, and model kind 'swav' takes image" in problem(path)
    path = write(project, "half", "name: half\nupstream: {data: exporter}\nmodel: {kind: swav}\n")
    assert "data.dataset: upstream and upstream.data go together" in problem(path)


@pytest.mark.slow
@needs_fashion_mnist
def test_a_spec_trains_on_the_dataset_another_spec_wrote(fmnist: Path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**__import__("os").environ, "PIPELINE_ROOT": str(fmnist), "MPLBACKEND": "Agg"}
    env.pop("MLFLOW_TRACKING_URI", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tests.toy_consumer", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)

    done = run()
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = json.loads(done.stdout.strip().splitlines()[-1])
    written = fmnist / "artifacts" / "producer" / "evaluate" / "dataset"
    described = json.loads((written / "dataset.json").read_text())
    assert described["modality"] == "vector"
    assert [f["shape"] for f in described["fields"]] == [[64], []]
    assert evaluated["dataset"] == "producer_features"
    assert evaluated["network"]["accuracy"] > 0.5  # an MLP on the features: far above chance (0.1)
    producer_run = json.loads((fmnist / "metrics" / "producer" / "evaluate.json").read_text())["run_id"]
    assert evaluated["upstream"]["data"] == {"spec": "producer", "run_id": producer_run}
    record = json.loads((fmnist / "artifacts" / "on_features" / "pretrain" / "run.json").read_text())
    assert record["input_shape"] == [64]
    assert record["upstream"] == {"data": producer_run}
    tampered = run("--tamper")
    assert tampered.returncode != 0
    assert "train.input.npy is corrupt (its sha256 does not match)" in tampered.stderr


def test_a_written_dataset_counts_only_from_the_writers_last_finished_evaluation(project: Path):
    import numpy as np

    from pipeline.data.written import write_dataset
    from pipeline.spec.experiment import spec_hash
    from pipeline.upstream import written_dataset

    producer = load(write(project, "producer",
                          BASE.format(name="producer") + "downstream: [{kind: export_features}]\n"))
    reader = load(write(project, "reader", "name: reader\ndata: {dataset: upstream}\n"
                                           "upstream: {data: producer, encoder: producer}\n"))
    with pytest.raises(PipelineError, match="producer has not written its dataset"):
        written_dataset(reader)
    folder = project / "artifacts" / "producer" / "evaluate" / "dataset"
    arrays = {"input": np.zeros((4, 3), dtype=np.float32), "label": np.arange(4)}
    write_dataset(folder, "producer_features", "test", "vector", arrays, arrays, ("a", "b", "c", "d"), run_id="r1")
    metrics = project / "metrics" / "producer"
    metrics.mkdir(parents=True)
    (metrics / "evaluate.json").write_text(json.dumps({"run_id": "r2", "spec_hash": spec_hash(producer)}))
    with pytest.raises(PipelineError, match="was not written by producer's last finished evaluation"):
        written_dataset(reader)  # an evaluation that wrote it and then failed
    (metrics / "evaluate.json").write_text(json.dumps({"run_id": "r1", "spec_hash": "0ther"}))
    with pytest.raises(PipelineError, match="written by another configuration of it"):
        written_dataset(reader)
    (metrics / "evaluate.json").write_text(json.dumps({"run_id": "r1", "spec_hash": spec_hash(producer)}))
    found = written_dataset(reader)
    assert (found.name, found.run_id, found.source.modality) == ("producer", "r1", "vector")


def test_auto_resume_continues_only_the_same_configuration_code_and_upstream(project: Path):
    from pipeline.stages.resume import unfinished

    spec = load(write(project, "s", BASE.format(name="s")))
    out = project / "artifacts" / "s" / "pretrain"
    (out / "checkpoints").mkdir(parents=True)
    record = {"run_id": "r", "training_hash": training_hash(spec), "finished": False, "code": "c1", "upstream": {}}
    (out / "run.json").write_text(json.dumps(record))
    assert not unfinished(spec, out, "c1", {})  # nothing to continue from yet: start afresh
    (out / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert unfinished(spec, out, "c1", {})
    assert not unfinished(spec, out, "c2", {})  # other code
    assert not unfinished(spec, out, "c1", {"data": "r9"})  # another upstream run
