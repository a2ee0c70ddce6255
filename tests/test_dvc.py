"""DVC as its users expect (docs/dvc.md): metrics and plots committed to git and everything else
cached, so `dvc push` and `dvc pull` in a fresh clone leave nothing to rerun and `dvc metrics diff`
compares commits; every output of a stage declared (the seeds stage's other seeds too); stages that
depend on their code through fingerprints blind to comments and docstrings; and a queued
experiment's MLflow runs kept in the project's store, not in DVC's temporary copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline import paths
from pipeline.stages import dvc as generator
from tests.conftest import needs_fashion_mnist, tiny_spec

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def committed_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def entries(stage: dict) -> list[tuple[str, dict]]:
    """Each entry of a stage as (its key, its body with the entry's values filled in)."""
    if "foreach" not in stage:
        return [("", stage)]
    filled = []
    for key, item in stage["foreach"].items():
        text = json.dumps(stage["do"]).replace("${key}", key)
        for name, value in sorted(item.items(), key=lambda pair: -len(pair[0])):  # task_data10 before task_data1
            text = text.replace(f"${{item.{name}}}", str(value))
        filled.append((key, json.loads(text)))
    return filled


def outputs(body: dict) -> list[tuple[str, dict]]:
    """(path, options) of each of a stage's outs, metrics and plots."""
    found = []
    for section in ("outs", "metrics", "plots"):
        for out in body.get(section, []):
            found += [(out, {})] if isinstance(out, str) else list(out.items())
    return found


def ignored(path: str) -> bool:
    """Whether the checkout's .gitignore ignores `path` (a file, or a file inside a folder)."""
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT).returncode == 0


def test_outputs_git_holds_are_not_cached_and_outputs_dvc_caches_are_ignored_by_git():
    """cache: false outputs (metrics, plots, fingerprints) are committed, so a fresh clone has them
    and `dvc metrics diff` sees them at every commit; cached ones (data, artifacts, reports) come
    from the remote and are git-ignored. Checked for one entry of every stage."""
    assert not ignored("metrics/quickstart/evaluate.json")
    assert ignored("mlflow.db") and ignored("data/mnist1d/train.npz")
    checked = set()
    for name, stage in committed_stages().items():
        for _, body in entries(stage)[:1]:
            for path, options in outputs(body):
                inside = f"{path}/file.csv" if "." not in Path(path).name else path
                cached = options.get("cache", True)
                assert ignored(inside) == cached, f"{name}: {path} is {'' if cached else 'not '}cached, so git " \
                                                  f"must {'' if cached else 'not '}ignore it"
                checked.add(name)
    assert {"fingerprint", "fetch", "pretrain", "evaluate", "seeds", "report"} <= checked
    metrics = [path for _, body in entries(committed_stages()["evaluate"]) for path, _ in outputs(body)
               if path.endswith("evaluate.json")]
    assert "metrics/quickstart/evaluate.json" in metrics


def test_the_seeds_stage_declares_each_other_seeds_outputs_which_persist():
    stages = committed_stages()
    specs = generator._specs(ROOT / "specs")
    listed = dict(entries(stages["seeds"]))
    assert listed, "no spec lists seeds"
    for name, body in listed.items():
        declared = dict(outputs(body))
        assert declared[f"metrics/{name}/seeds.json"] == {"cache": False}
        for seed in generator.other_seeds(specs[name]):
            assert declared[f"artifacts/{name}-seed{seed}"] == {"persist": True}
            assert declared[f"metrics/{name}-seed{seed}"] == {"persist": True, "cache": False}
        assert len(declared) == 1 + 2 * len(generator.other_seeds(specs[name]))


def test_a_spec_whose_seeds_are_only_its_own_gets_no_seeds_stage(project: Path):
    from tests.conftest import tiny_spec

    (project / "specs" / "one.yaml").write_text(tiny_spec("one") + "seeds: [0]\n")
    (project / "specs" / "few.yaml").write_text(tiny_spec("few") + "seeds: [0, 4]\n")
    stages = yaml.safe_load(generator.generate(project / "specs", project))["stages"]
    assert set(stages["seeds"]["foreach"]) == {"few"}
    assert stages["report"]["foreach"]["one"]["figures"] == "metrics/one/evaluate.json"
    assert dict(outputs(dict(entries(stages["seeds"]))["few"]))["artifacts/few-seed4"] == {"persist": True}


def test_stages_depend_on_their_code_through_fingerprints_of_their_familys_code():
    stages = committed_stages()
    fingerprints = {path for path, _ in outputs(stages["fingerprint"])}
    for name, stage in stages.items():
        if name == "fingerprint":
            continue
        for key, body in entries(stage):
            code = [dep for dep in body.get("deps", []) if not dep.startswith(("data/", "artifacts/", "metrics/"))]
            assert code and all(dep in fingerprints for dep in code), f"{name}@{key} depends on {code}"
    by_spec = {key: body for key, body in entries(stages["evaluate"])}
    assert "fingerprints/evaluate-swav.txt" in by_spec["swav_fmnist"]["deps"]
    assert "fingerprints/pretrain-cpc.txt" in dict(entries(stages["pretrain"]))["quickstart"]["deps"]
    # The fingerprint stage reruns on any byte of that code (DVC hashes it), and writes every file.
    code = generator._plan(generator._specs(ROOT / "specs"))["code"]
    every = {path for paths_ in code.sets.values() for path in paths_}
    deps = stages["fingerprint"]["deps"]
    assert all(any(path == dep or path.startswith(f"{dep}/") for dep in deps) for path in every)
    assert "pipeline/stages/dvc.py" in deps


def test_the_fingerprint_files_hold_what_a_training_records_as_its_code(tmp_path: Path):
    """`pipeline fingerprint` writes the fingerprint run.json and evaluate.json record (the code
    a finished training is kept by), each file naming the code it covers."""
    from pipeline.stages.evaluate import evaluate_code

    written = generator.write_fingerprints(tmp_path, ROOT / "specs")
    assert {path.name for path in written} == {Path(p).name for p, _ in outputs(committed_stages()["fingerprint"])}
    pretrain = (tmp_path / "fingerprints" / "pretrain-swav.txt").read_text().splitlines()
    assert pretrain[0] == generator.fingerprint(generator.code_paths("pretrain", "swav"))
    assert pretrain[1:] == generator.code_paths("pretrain", "swav")
    evaluate = (tmp_path / "fingerprints" / "evaluate-cpc.txt").read_text().splitlines()
    assert evaluate[0] == evaluate_code("cpc_sequence")


CODE = '''\
"""A module."""
import math  # the circle constant

RADIUS = 2
"""The radius."""


def area(radius=RADIUS):
    """The area of a circle."""
    # pi r squared
    return math.pi * radius ** 2  # a trailing comment


LABEL = "# not a comment"
'''

EDITS = {
    "docstring": ('"""The area of a circle."""', '"""The area of a disc:\n    pi r squared."""'),
    "module docstring": ('"""A module."""', '"""A module of geometry."""'),
    "attribute docstring": ('"""The radius."""', '"""The radius, in metres."""'),
    "comment": ("# pi r squared", "# the disc's area"),
    "trailing comment": ("# the circle constant", "# pi"),
    "blank lines": ("RADIUS = 2\n", "\n\nRADIUS = 2\n\n"),
}

CODE_EDITS = {
    "expression": ("radius ** 2", "radius ** 3"),
    "string": ('"# not a comment"', '"# still not a comment"'),
    "default": ("def area(radius=RADIUS)", "def area(radius=1)"),
}


def fingerprints_around(tmp_path: Path, old: str, new: str) -> tuple[str, str, Path]:
    """The fingerprint of a package holding CODE, before and after replacing `old` by `new` in it."""
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "geometry.py"
    module.write_text(CODE)
    before = generator.fingerprint(["pkg"], tmp_path)
    module.write_text(CODE.replace(old, new))
    return before, generator.fingerprint(["pkg"], tmp_path), module


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_prose_edit_leaves_the_fingerprint(tmp_path: Path, edit: str):
    before, after, module = fingerprints_around(tmp_path, *EDITS[edit])
    assert module.read_text() != CODE
    assert after == before


@pytest.mark.parametrize("edit", sorted(CODE_EDITS))
def test_a_code_edit_changes_the_fingerprint(tmp_path: Path, edit: str):
    before, after, _ = fingerprints_around(tmp_path, *CODE_EDITS[edit])
    assert after != before


def dvc_env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg",
           "DVC_NO_ANALYTICS": "1"}
    for name in ("PIPELINE_ROOT", "MLFLOW_TRACKING_URI", "DVC_ROOT"):
        env.pop(name, None)
    return env


def sh(*args: str, cwd: Path, timeout: int = 600) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=dvc_env(), timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def commit(repo: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", message, cwd=repo)


def test_dvc_reruns_nothing_for_a_docstring_or_comment_edit_and_the_stage_for_a_code_edit(tmp_path: Path):
    """The generated dvc.yaml's mechanism in a repository of its own: a stage depends on a
    fingerprint file; DVC reruns the (cheap) fingerprint stage on any edit of the code, and the
    stage only when the fingerprint changed."""
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "geometry.py").write_text(CODE)
    write = ("from pathlib import Path; from pipeline.stages.dvc import write_fingerprint; "
             "write_fingerprint(Path('fingerprints/geometry.txt'), ['pkg'], Path.cwd())")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "fingerprint": {"cmd": f'{sys.executable} -c "{write}"', "deps": ["pkg"],
                        "outs": [{"fingerprints/geometry.txt": {"cache": False}}]},
        "area": {"cmd": "echo ran >> runs.txt", "deps": ["fingerprints/geometry.txt"],
                 "outs": [{"runs.txt": {"cache": False, "persist": True}}]}}}))
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    assert ran(sh("dvc", "repro", cwd=repo)) == {"fingerprint", "area"}
    module = repo / "pkg" / "geometry.py"
    for old, new in (EDITS["docstring"], EDITS["comment"]):
        module.write_text(module.read_text().replace(old, new))
        status = sh("dvc", "status", cwd=repo)  # the fingerprint stage's code changed, nothing else
        assert status.startswith("fingerprint:") and "area" not in status, status
        assert "up to date" in sh("dvc", "status", "area", cwd=repo)
        assert ran(sh("dvc", "repro", cwd=repo)) == {"fingerprint"}
        assert "up to date" in sh("dvc", "status", cwd=repo)
    assert (repo / "runs.txt").read_text() == "ran\n"
    module.write_text(module.read_text().replace(*CODE_EDITS["expression"]))
    assert ran(sh("dvc", "repro", cwd=repo)) == {"fingerprint", "area"}
    assert (repo / "runs.txt").read_text() == "ran\nran\n"


def test_a_dvc_experiments_copy_logs_to_the_projects_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """DVC runs a queued (or --temp) experiment in `<repo>/.dvc/tmp/exps/<tmp>/`, a git checkout
    without the git-ignored mlflow.db, and names the repository in $DVC_ROOT: the runs go to the
    repository's store, the outputs stay in the copy DVC collects."""
    repo = tmp_path / "repo"
    for root in (repo, repo / ".dvc" / "tmp" / "exps" / "tmpa1b2", repo / ".dvc" / "tmp" / "exps" / "standalone" / "t"):
        (root / "specs").mkdir(parents=True)
        (root / ".dvc").mkdir(exist_ok=True)
        (root / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.delenv("PIPELINE_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for copy in (repo / ".dvc" / "tmp" / "exps" / "tmpa1b2", repo / ".dvc" / "tmp" / "exps" / "standalone" / "t"):
        monkeypatch.chdir(copy / "specs")
        monkeypatch.setenv("DVC_ROOT", str(repo))
        assert paths.project_root() == copy.resolve()  # outputs: in the copy
        assert paths.default_tracking_uri() == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
        assert paths.default_artifact_root() == repo.resolve() / "mlartifacts"
        monkeypatch.delenv("DVC_ROOT")  # the same folder, not run by DVC: its own store
        assert paths.default_tracking_uri() == f"sqlite:///{copy.resolve() / 'mlflow.db'}"
    monkeypatch.chdir(repo)  # `dvc repro` in the repository itself
    monkeypatch.setenv("DVC_ROOT", str(repo))
    assert paths.default_tracking_uri() == f"sqlite:///{repo.resolve() / 'mlflow.db'}"


# A SwAV spec that trains and evaluates in seconds: the end-to-end tests below run it through DVC.
TINY = (tiny_spec("tiny", images=256, limit_train_batches=2)
        .replace("batch_size: 64}", "probe_subset: 600, eval_subset: 1000, batch_size: 64}")
        + "downstream:\n  - {kind: knn, k: 5}\n")


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    """A git + DVC project with the checkout's .gitignore and one tiny spec, after `dvc repro`
    and a commit of what git holds."""
    repo = tmp_path_factory.mktemp("project")
    (repo / "specs").mkdir()
    shutil.copy(ROOT / "specs" / "schema.json", repo / "specs")
    for name in (".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    (repo / "specs" / "tiny.yaml").write_text(TINY)
    (repo / "dvc.yaml").write_text("stages: {}\n")
    sh("pipeline", "dvc", cwd=repo)
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    commit(repo, "init")
    sh("dvc", "repro", cwd=repo)
    commit(repo, "repro")
    return repo


@pytest.mark.slow
@needs_fashion_mnist
def test_push_then_pull_in_a_fresh_clone_leaves_nothing_to_rerun(reproduced: Path, tmp_path: Path):
    repo = reproduced
    tracked = sh("git", "ls-files", cwd=repo).split()
    assert {"dvc.lock", "metrics/tiny/evaluate.json", "metrics/tiny/pretrain.json"} <= set(tracked)
    assert not [path for path in tracked if path.startswith(("data/", "artifacts/", "reports/", "mlflow"))]
    # The figures at two commits side by side: none at the first, the run's at the second.
    diff = sh("dvc", "metrics", "diff", "HEAD~1", "--json", cwd=repo)
    assert "knn.encoder" in json.loads(diff)["metrics/tiny/evaluate.json"]

    remote = tmp_path / "remote"
    sh("dvc", "remote", "add", "-d", "--local", "storage", str(remote), cwd=repo)
    sh("dvc", "push", cwd=repo)
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert (clone / "metrics" / "tiny" / "evaluate.json").is_file()  # from git
    assert not (clone / "artifacts").exists()
    sh("dvc", "remote", "add", "-d", "--local", "storage", str(remote), cwd=clone)
    sh("dvc", "pull", cwd=clone)
    assert (clone / "artifacts" / "tiny" / "pretrain" / "encoder.pt").is_file()
    assert (clone / "reports" / "tiny.md").is_file()
    assert "Data and pipelines are up to date." in sh("dvc", "status", cwd=clone)
    assert not ran(sh("dvc", "repro", cwd=clone))


@pytest.mark.slow
@needs_fashion_mnist
def test_a_queued_experiment_logs_its_runs_to_the_projects_store(reproduced: Path):
    """`dvc exp run --queue` then `dvc queue start`: the experiment runs in a temporary copy of
    the repository, deleted afterwards; its MLflow runs are in the project's mlflow.db."""
    from mlflow.tracking import MlflowClient

    repo = reproduced
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny").experiment_id

    def epochs() -> list[str]:
        return sorted(r.data.params["train.max_epochs"] for r in client.search_runs([experiment]))

    assert epochs() == ["1", "1"]  # the training and the evaluation of the committed spec
    sh("dvc", "exp", "run", "--queue", "-S", "specs/tiny.yaml:train.max_epochs=2", cwd=repo)
    sh("dvc", "queue", "start", "-j", "1", cwd=repo)
    deadline = time.monotonic() + 600
    while True:
        status = sh("dvc", "queue", "status", cwd=repo)
        if "Success" in status or "Failed" in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(5)
    assert "Success" in status, status + sh("dvc", "queue", "logs", status.splitlines()[1].split()[0], cwd=repo)
    assert epochs() == ["1", "1", "2", "2"]
    assert not [p for p in (repo / ".dvc" / "tmp" / "exps").glob("tmp*")]  # the copy is gone
    assert "train.max_epochs" in sh("dvc", "exp", "show", "--csv", cwd=repo)
