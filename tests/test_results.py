"""Seeds and traceable results: `pipeline run --seeds` (mean and spread per figure, an interrupted
sweep continued), results/<spec>.json with its provenance, and the docs pages generated from
those files (and checked against them)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.aggregate import aggregate, summarise_evaluations
from pipeline.errors import PipelineError
from pipeline.formatting import spread
from pipeline.spec.load import load
from pipeline.stages import docs
from pipeline.stages.publish import publish, published, results_table
from pipeline.stages.report import report
from pipeline.stages.seeds import parse_seeds, variant
from tests.conftest import ROOT, needs_fashion_mnist, tiny_spec


def published_results(project: Path) -> list[dict]:
    return published(project)


def headline(task: str, value: float, validation: float, raw: float) -> dict:
    return {"task": task, "label": task.replace("_", " "), "value": value, "unit": "accuracy",
            "validation": validation, "baselines": {"raw input": raw}, "baselines_validation": {"raw input": raw}}


def test_the_spread_over_seeds_is_the_mean_and_sample_standard_deviation():
    found = aggregate([[headline("linear_probe", v, v + 0.01, 0.8)] for v in (0.90, 0.91, 0.95)])
    (entry,) = found
    assert entry["seeds"] == 3
    assert entry["value"]["values"] == [0.90, 0.91, 0.95]
    assert entry["value"]["mean"] == pytest.approx(0.92)
    assert entry["value"]["std"] == pytest.approx(math.sqrt((0.02**2 + 0.01**2 + 0.03**2) / 2))
    assert entry["validation"]["mean"] == pytest.approx(0.93)
    assert entry["baselines"]["raw input"]["std"] == pytest.approx(0.0)
    assert spread(entry["value"], "accuracy") == "92.0 ± 2.6%"
    single = aggregate([[headline("knn", 0.5, 0.6, 0.4)]])[0]
    assert single["value"]["std"] is None
    assert spread(single["value"], "accuracy") == "50.0%"


@pytest.mark.parametrize("text", ["", "a,b", "0,0", "-1", "1,,x"])
def test_seeds_must_be_distinct_non_negative_integers(text: str):
    with pytest.raises(PipelineError, match="--seeds takes distinct non-negative integers"):
        parse_seeds(text)


def test_each_other_seed_is_its_own_output_in_the_same_experiment(project: Path):
    (project / "specs" / "s.yaml").write_text(tiny_spec("s") + "seeds: [0, 3]\n")
    spec = load(project / "specs" / "s.yaml")
    assert variant(spec, 0) is spec
    other = variant(spec, 3)
    assert (other.name, other.seed, other.seeds, other.tracking.experiment) == ("s-seed3", 3, [], "s")


def test_a_spec_that_lists_seeds_gets_a_seeds_stage_its_report_waits_for(project: Path):
    import yaml

    from pipeline.stages.dvc import generate

    (project / "specs" / "s.yaml").write_text(tiny_spec("s") + "seeds: [0, 1, 2]\n")
    (project / "specs" / "u.yaml").write_text(tiny_spec("u"))
    stages = yaml.safe_load(generate(project / "specs", project))["stages"]
    assert set(stages["seeds"]["foreach"]) == {"s"}
    assert stages["seeds"]["do"]["cmd"] == "pipeline run specs/${key}.yaml --seeds ${item.seeds}"
    assert stages["seeds"]["foreach"]["s"]["seeds"] == "0,1,2"
    assert "metrics/s/evaluate.json" == stages["seeds"]["foreach"]["s"]["evaluated"]
    assert stages["report"]["foreach"]["s"]["figures"] == "metrics/s/seeds.json"
    assert stages["report"]["foreach"]["u"]["figures"] == "metrics/u/evaluate.json"
    # The seeds a sweep runs are not part of what one run computes.
    from pipeline.spec.experiment import spec_hash, training_hash

    with_seeds, without = load(project / "specs" / "s.yaml"), load(project / "specs" / "u.yaml")
    assert training_hash(with_seeds) == training_hash(without)
    assert spec_hash(with_seeds) == spec_hash(without.model_copy(update={"name": "s"}))


def _fake_evaluation(project: Path, name: str, seed: int, value: float, commit: str = "abc1234def") -> dict:
    evaluated = {"run_id": f"run-{name}", "pretrain_run_id": f"train-{name}", "seed": seed, "model": "swav",
                 "dataset": "fashion_mnist", "spec_hash": "h", "training_hash": "t", "git_commit": commit,
                 "git_dirty": False, "dataset_sha256": "d" * 64, "wall_time_s": 60.0, "training_wall_time_s": 120.0,
                 "machine": {"cpu": "test cpu", "cores": 2}, "upstream": {},
                 "headlines": [headline("linear_probe", value, value + 0.002, 0.845)]}
    folder = project / "metrics" / name
    folder.mkdir(parents=True)
    (folder / "evaluate.json").write_text(json.dumps(evaluated))
    return evaluated


def test_results_files_carry_the_provenance_and_the_docs_tables_are_made_from_them(project: Path):
    (project / "specs" / "a.yaml").write_text(tiny_spec("a"))
    runs = [(seed, name, _fake_evaluation(project, name, seed, value))
            for seed, name, value in ((0, "a", 0.904), (1, "a-seed1", 0.901), (2, "a-seed2", 0.908))]
    (project / "metrics" / "a" / "seeds.json").write_text(json.dumps(summarise_evaluations("a", runs)))
    _fake_evaluation(project, "b", 0, 0.70)
    # The other seeds' folders show in their spec's row, not as specs of their own.
    summary = report()
    assert "| a | swav | fashion_mnist | linear_probe | linear probe: **90.4 ± 0.4%** | 90.6 ± 0.4% |" in summary
    assert "| b | swav | fashion_mnist | linear_probe | linear probe: **70.0%** | 70.2% |" in summary
    assert "a-seed1" not in summary
    # A folder a wider sweep left behind is not a spec of its own either.
    _fake_evaluation(project, "a-seed7", 7, 0.5)
    assert "a-seed7" not in report()

    (path,) = publish(["a"], {"a": "SwAV, tiny"})
    assert path == project / "results" / "a.json"
    published = json.loads(path.read_text())
    assert published["seeds"] == [0, 1, 2]
    assert published["description"] == "SwAV, tiny"
    for run in published["runs"]:
        assert {"git_commit", "spec_hash", "seed", "evaluate_run_id", "pretrain_run_id", "dataset_sha256",
                "wall_time_s", "training_wall_time_s", "machine"} <= set(run)
    assert [r["evaluate_run_id"] for r in published["runs"]] == ["run-a", "run-a-seed1", "run-a-seed2"]

    page = project / "docs" / "swav.md"
    assert page in docs.write(check=True, root=project)  # not written yet
    assert not page.exists()
    docs.write(root=project)
    text = page.read_text()
    assert ("| `a` | SwAV, tiny | linear probe | **90.4 ± 0.4%** | 90.6 ± 0.4% | raw input 84.5 ± 0.0% | 3 | "
            "3.0 min | abc1234 |") in text
    assert "[`a`](../specs/a.yaml) | swav | fashion_mnist |" in text  # under its family's specs
    assert docs.write(check=True, root=project) == []
    # A figure made on a GPU says so beside its time.
    gpu_run = dict(published, runs=[{**r, "machine": {**r["machine"], "gpu": "NVIDIA H200"}}
                                    for r in published["runs"]])
    path.write_text(json.dumps(gpu_run))
    assert "| 3 | 3.0 min (NVIDIA H200) | abc1234 |" in results_table(published_results(project))
    path.write_text(json.dumps(published))
    # Editing a result without regenerating the page is caught, and so is a page edited by hand.
    published["headlines"][0]["value"]["mean"] = 0.95
    path.write_text(json.dumps(published))
    assert docs.write(check=True, root=project) == [page]
    docs.write(root=project)
    page.write_text(page.read_text() + "an edit\n")
    assert docs.write(check=True, root=project) == [page]
    # A page of a plugin that is no longer registered is removed; a hand-written page is not.
    (project / "docs" / "gone.md").write_text(docs.MARK + " ... -->\n# gone\n")
    (project / "docs" / "extending.md").write_text("# Extending\n")
    docs.write(root=project)
    assert not (project / "docs" / "gone.md").exists()
    assert (project / "docs" / "extending.md").exists()


def test_the_docs_are_the_ones_the_committed_results_make():
    """The figures the docs quote come from results/*.json: the pages cannot drift from them."""
    done = subprocess.run([sys.executable, "-m", "pipeline", "docs", "--check"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PIPELINE_ROOT": str(ROOT)})
    assert done.returncode == 0, done.stderr
    results = sorted((ROOT / "results").glob("*.json"))
    assert results, "no committed results"
    for path in results:
        found = json.loads(path.read_text())
        assert found["spec"] == path.stem
        assert (ROOT / "specs" / f"{path.stem}.yaml").is_file()
        assert all(len(run["git_commit"]) == 40 and run["evaluate_run_id"] for run in found["runs"])


@needs_fashion_mnist
def test_a_spec_runs_over_seeds_and_an_interrupted_sweep_continues(fmnist: Path):
    (fmnist / "specs" / "t.yaml").write_text(
        tiny_spec("t") + "downstream:\n  - {kind: linear_probe, weight_decays: [0.001], max_iter: 20}\n")
    env = {**os.environ, "PIPELINE_ROOT": str(fmnist), "MPLBACKEND": "Agg"}
    env.pop("MLFLOW_TRACKING_URI", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline", "run", "specs/t.yaml", *args], cwd=fmnist,
                              env=env, capture_output=True, text=True, timeout=600)

    first = run("--seeds", "0,1", "--jobs", "2")  # both seeds at once, each in a process of its own
    assert first.returncode == 0, first.stderr[-3000:]
    assert re.search(r"2 seeds, 2 at a time, \d+ torch thread\(s\) each", first.stderr)
    second = run("--seeds", "0,1,2")  # seeds 0 and 1 are current: kept, only seed 2 runs
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr.count("is current") == 4  # two trainings and two evaluations kept
    sweep = json.loads((fmnist / "metrics" / "t" / "seeds.json").read_text())
    assert sweep["seeds"] == [0, 1, 2]
    assert [r["name"] for r in sweep["runs"]] == ["t", "t-seed1", "t-seed2"]
    values = sweep["headlines"][0]["value"]["values"]
    assert len(set(values)) > 1  # the seeds differ
    assert sweep["headlines"][0]["value"]["mean"] == pytest.approx(sum(values) / 3)
    assert [json.loads((fmnist / "metrics" / n / "evaluate.json").read_text())["seed"]
            for n in ("t", "t-seed1", "t-seed2")] == [0, 1, 2]
    summary = (fmnist / "reports" / "summary.md").read_text()
    assert "| 3 (0, 1, 2) |" in summary
    assert "t-seed1 |" not in summary
    bad = run("--seeds", "0,x")
    assert bad.returncode == 1
    assert "--seeds takes distinct non-negative integers" in bad.stderr
    assert "--jobs takes a positive number" in run("--seeds", "0,1", "--jobs", "0").stderr
    without_own = run("--seeds", "1,2")
    assert without_own.returncode == 1
    assert "must include the spec's own seed (0)" in without_own.stderr


def test_the_voken_table_sets_each_language_model_beside_mlm_alone_seed_by_seed(project: Path):
    from pipeline.models.voken.report import voken_table

    specs = project / "specs"
    (specs / "m.yaml").write_text("name: m\ndata: {dataset: fmnist_scenes}\nmodel: {kind: voken_matcher}\n"
                                  "downstream: [{kind: vokenize}]\n")
    results = []
    for name, mode, values in (("voken_lm_b", "matched", (0.52, 0.55, 0.50)),
                               ("voken_lm_a", "none", (0.50, 0.52, 0.51)),
                               ("voken_lm_c", "random", (0.49, 0.52, 0.50)),
                               ("voken_lm_d", "matched, voken_weight: 0.1", (0.50, 0.52, 0.51))):
        (specs / f"{name}.yaml").write_text(f"name: {name}\nupstream: {{data: m}}\ndata: {{dataset: upstream}}\n"
                                            f"model: {{kind: voken_lm, vokens: {mode}}}\n")
        stats = aggregate([[{"task": "text_probe_2", "label": "grounded facts (probe)", "value": v, "unit": "accuracy",
                             "validation": v, "baselines": {"untrained": 0.5, "majority class": 0.5},
                             "baselines_validation": {}}] for v in values])
        results.append({"spec": name, "seeds": [0, 1, 2], "headlines": stats,
                        "runs": [{"wall_time_s": 60.0, "training_wall_time_s": 60.0}] * 3})
    table = voken_table(results).splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == ["| `voken_lm_a`", "| `voken_lm_b`", "| `voken_lm_d`",
                                                          "| `voken_lm_c`"]
    assert "| MLM + vokens, weight 0.1 | - | - | **51.0 ± 1.0%** (untrained 50.0 ± 0.0%) | +0.0 ± 0.0 (3 seeds) |" \
        in table[4]
    # MLM alone first; the others' differences from it per seed: +2, +3, -1 points (mean 1.3, std 2.1).
    assert "| MLM + vokens | - | - | **52.3 ± 2.5%** (untrained 50.0 ± 0.0%) | +1.3 ± 2.1 (3 seeds) |" in table[3]
    random = "| MLM + random vokens | - | - | **50.3 ± 1.5%** (untrained 50.0 ± 0.0%) | -0.7 ± 0.6 (3 seeds) |"
    assert random in table[5]
    assert "| MLM alone | - | - | **51.0 ± 1.0%** (untrained 50.0 ± 0.0%) | - |" in table[2]


def test_the_memory_figure_plots_each_learner_that_keeps_something_against_its_bytes(project: Path):
    from pipeline.models.continual.report import MEMORY_FIGURE, memory_panels

    specs = project / "specs"
    data = "data: {dataset: fashion_mnist}\n"
    learners = {  # name: (strategy, extra model settings, accuracies over seeds, samples, bytes)
        "continual_joint": ("{name: joint}", "", (0.87, 0.88, 0.86), 0, 0),
        "continual_naive": ("{name: naive}", "", (0.19, 0.20, 0.21), 0, 0),
        "continual_trick": ("{name: naive, contrast: current}", "", (0.2, 0.3, 0.25), 0, 0),
        "continual_replay": ("{name: replay}", "", (0.80, 0.82, 0.78), 1000, 785_000),
        "continual_replay_small": ("{name: replay, memory: {bytes: 50000}}", "", (0.60, 0.70, 0.65), 63, 49_455),
        "continual_remind": ("{name: remind}", ", latent_layer: 8", (0.80, 0.80, 0.80), 14_389, 785_000),
        "continual_ewc": ("{name: ewc}", "", (0.21, 0.21, 0.21), 0, 3_827_000),
    }
    (specs / "ssl.yaml").write_text(f"name: ssl\n{data}model: {{kind: swav}}\n")
    results = []
    for name, (strategy, extra, values, samples, size) in learners.items():
        upstream = "upstream: {encoder: ssl}\n" if name == "continual_remind" else ""
        (specs / f"{name}.yaml").write_text(f"name: {name}\n{upstream}{data}"
                                            f"model: {{kind: continual, strategy: {strategy}{extra}}}\n")
        figures = {"average_accuracy": aggregate([[{"task": "continual", "label": "x", "value": v,
                                                    "unit": "accuracy"}] for v in values])[0]["value"]}
        if size:
            figures["memory_bytes"] = {"mean": size, "std": 0.0, "values": [size] * 3}
            figures["memory_samples"] = {"mean": samples, "std": 0.0, "values": [samples] * 3}
        results.append({"spec": name, "metrics": {"continual": figures}, "headlines": [], "runs": []})
    (panel,) = memory_panels(results).values()
    assert panel["references"] == {"joint (MLP, keeps nothing)": pytest.approx(0.87),
                                   "naive (MLP, keeps nothing)": pytest.approx(0.20)}
    series = panel["series"]
    assert list(series) == ["ewc (MLP)", "remind (ssl's encoder)", "replay (MLP)"]  # naive (labels trick) keeps nothing
    assert sorted(series["replay (MLP)"]) == [(49_455, pytest.approx(0.65), pytest.approx(0.05), "63"),
                                              (785_000, pytest.approx(0.80), pytest.approx(0.02), "1,000")]
    assert series["ewc (MLP)"] == [(3_827_000, pytest.approx(0.21), pytest.approx(0.0), "")]

    (project / "results").mkdir()
    for result in results:
        (project / "results" / f"{result['spec']}.json").write_text(json.dumps(result))
    page = project / "docs" / "continual.md"

    def current() -> bool:
        return page not in docs.write(check=True, root=project)

    assert not current()
    docs.write(root=project)
    figure = project / "results" / MEMORY_FIGURE
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert f"](../results/{MEMORY_FIGURE})" in page.read_text()
    assert current()
    drawn = figure.read_bytes()
    docs.write(root=project)
    assert figure.read_bytes() == drawn  # not redrawn while it matches
    # A result changed without redrawing the figure is caught, and a figure deleted.
    results[3]["metrics"]["continual"]["average_accuracy"]["mean"] = 0.9
    (project / "results" / "continual_replay.json").write_text(json.dumps(results[3]))
    assert not current()
    docs.write(root=project)
    assert current()
    assert figure.read_bytes() != drawn
    figure.unlink()
    assert not current()
    # So is a figure drawn from other results than the page's (another branch's, say).
    docs.write(root=project)
    figure.write_bytes(drawn)
    assert not current()
    # With no learner that keeps something, the page says so and no figure is left behind.
    for name in ("continual_replay", "continual_replay_small", "continual_remind", "continual_ewc"):
        (project / "results" / f"{name}.json").unlink()
    docs.write(root=project)
    assert not figure.exists()
    assert "No continual learner with a memory" in page.read_text()
    assert current()


def test_the_spike_table_sets_the_spiking_networks_side_by_side_by_energy_ratio():
    from pipeline.models.spiking.report import sections

    def result(name: str, ratio: float, spikes: float) -> dict:
        stats = {"energy_ratio_ann_over_snn": {"mean": ratio, "std": 0.1}, "spikes_per_sample": {"mean": spikes,
                 "std": None}, "sparsity": {"mean": 0.9, "std": None}}
        return {"spec": name, "runs": [{}, {}], "metrics": {"spike_stats": stats,
                                                            "network": {"accuracy": {"mean": 0.8, "std": None}}}}

    (section,) = sections([result("low", 2.0, 1234.0), {"spec": "ssl", "metrics": {"knn": {}}},
                           result("high", 30.0, 85.0)])
    rows = section.markdown.splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| `high`", "| `low`"]  # the larger saving first
    assert "| `low` | 80.0% | 1,234 | 90.0% | - | - | **2x ± 0.10** | 2 |" == rows[1]
    assert sections([{"spec": "ssl", "metrics": {"knn": {}}}]) == []  # nothing to say without a spiking net


def test_activation_sparsity_measures_by_hand():
    import torch

    from pipeline.evaluators.activation_sparsity import measures, treves_rolls

    one_hot = torch.eye(4)  # each example one unit: population sparsity 1; each unit one example: lifetime 1
    assert measures(one_hot)["population_sparsity"] == pytest.approx(1.0)
    assert measures(one_hot)["lifetime_sparsity"] == pytest.approx(1.0)
    dense = torch.ones(5, 4)
    assert measures(dense)["population_sparsity"] == pytest.approx(0.0)
    assert measures(dense)["zero_fraction"] == 0.0
    # [1, 1, 0, 0]: (1 - (0.5)^2 / 0.5) / (1 - 1/4) = 2/3; a unit never active is dead
    half = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert treves_rolls(half, dim=1).item() == pytest.approx(2 / 3)
    assert measures(torch.tensor([[1.0, 0.0], [2.0, 0.0]]))["dead_units"] == 0.5
