"""The meta-learning family: episodes drawn from classes meta-training never sees, every kind's
meta-step, the few_shot task's interval and baselines, and a killed meta-training resumed to the
same weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import plugins
from pipeline.data.datamodule import Splits, load_splits
from pipeline.data.fetch import fetch_dataset
from pipeline.errors import PipelineError
from pipeline.models.meta import KINDS, episodes
from pipeline.models.meta.few_shot import centroid_scores, interval
from pipeline.models.meta.module import MetaLearner
from pipeline.spec.components import DataSpec, TrainSpec
from tests.test_resume import finish, kill_at_epoch, pipeline

WAYS, SHOTS, QUERIES = 5, 1, 3


@pytest.fixture(scope="module")
def mnist1d_fewshot(tmp_path_factory) -> Splits:
    root = tmp_path_factory.mktemp("data")
    fetch_dataset(plugins.datasets()["mnist1d_fewshot"], root=root)
    return load_splits(DataSpec(dataset="mnist1d_fewshot", val_fraction=0.1), seed=0, root=root)


def _spec(kind: str, **settings):
    episodes_spec = {"ways": WAYS, "shots": SHOTS, "queries": QUERIES, "meta_batch": 4, "episodes_per_epoch": 8,
                     "val_episodes": 4}
    extra = {} if kind == "protonet" else {"inner_steps": 2, "eval_inner_steps": 2}
    return KINDS[kind](kind=kind, episodes=episodes_spec, network={"width": 8, "blocks": 2}, **extra, **settings)


def test_no_meta_test_or_validation_class_reaches_meta_training(mnist1d_fewshot: Splits):
    pools = episodes.pools(mnist1d_fewshot, 0.2, WAYS, regression=False)
    test_classes = {mnist1d_fewshot.classes[c] for c in pools.test.classes}
    assert test_classes == {f"digit_{d}" for d in range(10)}
    assert not set(pools.train.classes) & set(pools.val.classes)
    assert len(pools.val.classes) == 20 and len(pools.train.classes) == 80
    stream = episodes.EpisodeStream(pools.train, 0, "train", WAYS, SHOTS, QUERIES, length=1000)
    seen = set()
    for k in range(1000):
        seen |= set(stream[k]["classes"].tolist())
    assert seen <= set(pools.train.classes)
    assert len(seen) == len(pools.train.classes)  # 1,000 episodes reach every meta-training class


def test_meta_validation_episodes_are_fixed_whatever_the_seed(mnist1d_fewshot: Splits, tmp_path: Path):
    first = episodes.pools(mnist1d_fewshot, 0.2, WAYS, regression=False)
    order = torch.randperm(len(mnist1d_fewshot.train["input"]), generator=torch.Generator().manual_seed(5))
    other = Splits(train={k: v[order] for k, v in mnist1d_fewshot.train.items()}, val=mnist1d_fewshot.val,
                   test=mnist1d_fewshot.test, classes=mnist1d_fewshot.classes)  # another seed's shuffle
    second = episodes.pools(other, 0.2, WAYS, regression=False)
    assert second.val.classes == first.val.classes
    a, b = (episodes.draw(p.val, 0, "val", range(10), WAYS, SHOTS, QUERIES) for p in (first, second))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[2].glob("specs/*.yaml")),
                         ids=lambda p: p.stem)
def test_every_shipped_meta_spec_has_enough_classes_on_each_side(path: Path):
    """Each spec's class split gives its episodes enough classes (checked from the dataset's class
    names alone, before any training)."""
    from pipeline.models.meta import data
    from pipeline.spec.load import load

    spec = load(path)
    if spec.model is None or spec.model.kind not in KINDS or spec.model.objective != "classification":
        return
    if spec.data.dataset == "fmnist_fewshot":
        from pipeline.data.fashion_mnist import CLASSES

        classes = data.fmnist_fewshot_classes(CLASSES)
        bases = data.fmnist_test_bases()
        test = [i for i, name in enumerate(classes) if CLASSES.index(name.split("@")[0]) in bases]
    else:
        classes = data.mnist1d_fewshot_classes()
        test = [i for i, name in enumerate(classes) if name.startswith("digit_")]
    train = [i for i in range(len(classes)) if i not in test]
    split = episodes.split_classes(classes, np.array(train), np.array(test), spec.model.episodes.val_fraction,
                                   spec.model.episodes.ways)
    assert min(len(split.train), len(split.val), len(split.test)) >= spec.model.episodes.ways


def test_groups_stay_on_one_side_and_shared_classes_are_refused():
    classes = tuple(f"{base}@{angle}" for base in "abcdef" for angle in (0, 90)) + ("x", "y", "z", "w", "v")
    train_labels, test_labels = np.arange(12), np.arange(12, 17)
    split = episodes.split_classes(classes, train_labels, test_labels, 0.34, ways=2)
    val_groups = {episodes.group_of(classes[c]) for c in split.val}
    train_groups = {episodes.group_of(classes[c]) for c in split.train}
    assert len(val_groups) == 2 and not val_groups & train_groups
    assert len(split.val) == 4  # both rotations of each held-out group
    with pytest.raises(PipelineError, match="test classes the training split never holds"):
        episodes.split_classes(classes, train_labels, np.arange(10, 17), 0.34, ways=2)
    with pytest.raises(PipelineError, match="need 6 meta-validation classes"):
        episodes.split_classes(classes, train_labels, test_labels, 0.34, ways=6)


def test_episodes_are_seeded_and_relabelled_per_episode(mnist1d_fewshot: Splits):
    pools = episodes.pools(mnist1d_fewshot, 0.2, WAYS, regression=False)
    a = episodes.draw(pools.test, 3, "test", range(20), WAYS, SHOTS, QUERIES)
    b = episodes.draw(pools.test, 3, "test", range(20), WAYS, SHOTS, QUERIES)
    c = episodes.draw(pools.test, 4, "test", range(20), WAYS, SHOTS, QUERIES)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["support_x"], c["support_x"])
    assert a["support_x"].shape == (20, WAYS * SHOTS, 1, 40) and a["query_x"].shape == (20, WAYS * QUERIES, 1, 40)
    assert torch.equal(a["support_y"][0], torch.arange(WAYS).repeat_interleave(SHOTS))
    # Label 0 is a different class from one episode to the next: labels are permuted per episode.
    assert len(set(a["classes"][:, 0].tolist())) > 3
    # Support and query examples of an episode are distinct examples.
    for k in range(20):
        support = {tuple(x.flatten().tolist()) for x in a["support_x"][k]}
        assert not support & {tuple(x.flatten().tolist()) for x in a["query_x"][k]}


def test_the_epoch_sampler_reads_new_episodes_each_epoch():
    sampler = episodes.EpochEpisodes(8)
    first = list(sampler)
    sampler.set_epoch(1)
    assert first == list(range(8)) and list(sampler) == list(range(8, 16))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_takes_a_meta_step_that_lowers_nothing_to_nan(kind: str, mnist1d_fewshot: Splits):
    settings = {"first_order": True} if kind in ("maml",) else {}
    spec = _spec(kind, **settings)
    torch.manual_seed(0)
    model = MetaLearner(spec, TrainSpec(), (1, 40), 138)
    pools = episodes.pools(mnist1d_fewshot, 0.2, WAYS, regression=False)
    batch = episodes.draw(pools.train, 0, "train", range(4), WAYS, SHOTS, QUERIES)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.log = lambda *args, **kwargs: None  # outside a Trainer
    loss = model.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    moved = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert moved == set(before), set(before) - moved  # the meta-gradient reaches every weight
    scores = model.evaluate(episodes.draw(pools.val, 0, "val", range(4), WAYS, SHOTS, QUERIES))
    assert scores.shape == (4,) and ((scores >= 0) & (scores <= 1)).all()
    if kind == "anil":  # its inner loop leaves the body as it is (which still gets its meta-gradient)
        from pipeline.models.meta.algorithms import adapt

        start = {n: p.detach() for n, p in model.adapted().items()}
        adapted = adapt(model.loss, start, batch["support_x"][0], batch["support_y"][0], steps=2, lr=0.4,
                        names=model.moving())
        assert all(torch.equal(adapted[n], start[n]) for n in start if n.startswith("encoder."))
        assert not all(torch.equal(adapted[n], start[n]) for n in start if n.startswith("head."))


def test_meta_sgd_learns_a_rate_per_weight():
    model = MetaLearner(_spec("meta_sgd"), TrainSpec(), (1, 40), 138)
    rates = model.learning_rates()
    assert rates.keys() == model.adapted().keys()
    assert all(rates[n].shape == p.shape for n, p in model.adapted().items())


def test_the_interval_is_196_standard_errors():
    scores = torch.tensor([0.2, 0.4, 0.6, 0.8] * 25)
    expected = 1.96 * float(np.std(scores.numpy(), ddof=1)) / math.sqrt(100)
    assert interval(scores) == pytest.approx(expected, rel=1e-6)
    assert math.isnan(interval(torch.tensor([0.5])))


def test_nearest_centroid_on_separable_classes_is_perfect():
    support = torch.tensor([[[0.0, 0.0]], [[10.0, 10.0]]]).reshape(1, 2, 1, 2)
    query = torch.tensor([[[0.5, -0.5]], [[9.0, 11.0]], [[1.0, 0.0]]]).reshape(1, 3, 1, 2)
    batch = {"support_x": support, "support_y": torch.tensor([[0, 1]]), "query_x": query,
             "query_y": torch.tensor([[0, 1, 0]])}
    assert centroid_scores(batch).tolist() == [1.0]


def test_regression_reads_one_point_at_a_time():
    spec = KINDS["maml"](kind="maml", objective="regression", network={"kind": "mlp", "width": 8, "blocks": 2})
    model = MetaLearner(spec, TrainSpec(), (1, 50), 0)
    assert model.head.out_features == 1 and model(torch.zeros(7, 1)).shape == (7, 1)
    with pytest.raises(ValueError, match="network.kind: mlp"):
        KINDS["maml"](kind="maml", objective="regression").check_input((1, 50))


QUICK = """\
name: meta_resume
data: {dataset: mnist1d_fewshot, val_fraction: 0.0}
model:
  kind: maml
  episodes: {ways: 5, shots: 1, queries: 3, meta_batch: 4, episodes_per_epoch: 16, val_episodes: 4}
  network: {width: 8, blocks: 2}
  inner_steps: 1
  eval_inner_steps: 1
train: {max_epochs: 8, checkpoint_min_interval_s: 0, optimizer: {name: adam, lr: 0.001}}
"""


def _project(root: Path) -> Path:
    (root / "specs").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    fetch_dataset(plugins.datasets()["mnist1d_fewshot"], root=root / "data")
    (root / "specs" / "meta_resume.yaml").write_text(QUICK)
    return root


@pytest.mark.slow
def test_a_killed_meta_training_resumes_to_the_same_weights(tmp_path: Path):
    reference = _project(tmp_path / "reference")
    finish(pipeline(reference, "pretrain", "specs/meta_resume.yaml"))
    killed = _project(tmp_path / "killed")
    process = pipeline(killed, "pretrain", "specs/meta_resume.yaml")
    kill_at_epoch(process, killed / "artifacts" / "meta_resume" / "pretrain" / "checkpoints" / "last.ckpt")
    assert "resuming from" in finish(pipeline(killed, "pretrain", "specs/meta_resume.yaml", "--auto-resume"))
    mine = torch.load(killed / "artifacts/meta_resume/pretrain/encoder.pt", weights_only=True)
    theirs = torch.load(reference / "artifacts/meta_resume/pretrain/encoder.pt", weights_only=True)
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key
    _, resumed = _histories(killed)
    _, uninterrupted = _histories(reference)
    assert resumed["val/query_accuracy"] == uninterrupted["val/query_accuracy"]
    assert len(resumed["val/query_accuracy"]) == 8


def _histories(root: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("meta_resume").experiment_id])
    assert run.info.status == "FINISHED"
    return run.info.run_id, {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
                             for key in run.data.metrics}


def test_the_report_sets_each_meta_learner_beside_its_baselines():
    from pipeline.models.meta.report import sections

    def stats(*values):
        mean = sum(values) / len(values)
        return {"mean": mean, "std": None if len(values) == 1 else 0.01, "values": list(values)}

    classes = {"spec": "maml_x", "model": "maml", "runs": [{}, {}], "metrics": {"few_shot": {
        "1shot/accuracy": stats(0.6, 0.62), "1shot/scratch": stats(0.3, 0.32), "1shot/centroid": stats(0.4, 0.4),
        "1shot/embedding": stats(0.5, 0.52), "1shot/ci95": stats(0.02, 0.02), "5shot/accuracy": stats(0.8, 0.8)}}}
    one_seed = {"spec": "protonet_x", "model": "protonet", "runs": [{}], "metrics": {"few_shot": {
        "1shot/accuracy": stats(0.7), "1shot/accuracy_ci95": stats(0.015)}}}
    functions = {"spec": "maml_sine", "model": "maml", "runs": [{}], "metrics": {"few_shot": {
        "10shot/mse_steps_1": stats(0.5), "10shot/pretrained_mse_steps_1": stats(2.5),
        "10shot/mse_steps_10": stats(0.2), "10shot/pretrained_mse_steps_10": stats(1.5)}}}
    found = {section.title: section.markdown for section in sections([classes, one_seed, functions, {"spec": "y"}])}
    rows = found["Few-shot accuracy on meta-test classes"].splitlines()
    assert "| `maml_x` | maml | 1 | **61.0 ± 1.0%** | 31.0 ± 1.0% | 40.0 ± 1.0% | 51.0 ± 1.0% | 2 |" in rows
    assert any(row.startswith("| `maml_x` | maml | 5 | **80.0 ± 1.0%** | - |") for row in rows)
    assert "| `protonet_x` | protonet | 1 | **70.0 ± 1.5% (95% CI)** |" in "\n".join(rows)
    assert "| `maml_sine` | 10 |" in found["Adapting to new functions"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["anil", "meta_sgd", "reptile", "imaml", "protonet"])
def test_every_kind_trains_and_is_scored_through_pipeline_run(kind: str, tmp_path: Path):
    """The quick MAML spec's settings with another kind (MAML itself runs in the DVC chain test)."""
    root = tmp_path / kind
    (root / "specs").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    shipped = Path(__file__).resolve().parents[2] / "specs" / "maml_mnist1d_fewshot_quick.yaml"
    text = shipped.read_text().replace("kind: maml", f"kind: {kind}")
    if kind == "protonet":  # no inner loop
        text = "\n".join(line for line in text.splitlines() if "inner_" not in line) + "\n"
    (root / "specs" / "quick.yaml").write_text(text)
    finish(pipeline(root, "-q", "run", "specs/quick.yaml"))
    evaluated = json.loads((root / "metrics" / "maml_mnist1d_fewshot_quick" / "evaluate.json").read_text())
    assert evaluated["model"] == kind
    for shots in (1, 5):
        assert 0 < evaluated["few_shot"][f"{shots}shot/accuracy"] <= 1
    assert evaluated["headlines"][0]["label"].startswith("5-way 1-shot accuracy")
