"""The whole chain in a fresh git repository: `dvc repro` of tiny specs, the MLflow store
afterwards, an up-to-date second repro, and a change to one spec rerunning only that spec."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

TINY = """\
# yaml-language-server: $schema=schema.json
name: {name}
data:
  train_subset: 256
  probe_subset: 600
  eval_subset: 1000
  batch_size: 64
model:
  kind: swav
  prototypes: 10
  projection_hidden_dim: 64
  projection_dim: 32
  freeze_prototypes_steps: 1
  backbone:
    widths: [8, 16]
  multicrop:
    small_crops: 2
train:
  max_epochs: 2
  limit_train_batches: 2
downstream:
  - kind: linear_probe
    weight_decays: [0.001]
    max_iter: 20
  - kind: knn
    k: 5
  - kind: embedding
"""

# CPC of both kinds through the same stages, from the quick specs shipped in specs/: no special
# case anywhere in the chain.
QUICK_CPC = {"cpc_fmnist_quick": "fashion_mnist", "cpc_mnist1d_quick": "mnist1d"}
# The spiking networks too: each is scored itself and logs its spikes, whatever its kind.
QUICK_SPIKING = {"snn_conv_fmnist_quick": "fashion_mnist", "lsnn_mnist1d_quick": "mnist1d",
                 "snn_temporal_fmnist_quick": "fashion_mnist"}
# Continuous-time and reservoir networks: a CT-RNN on irregular samples, an ESN forecasting a series,
# a neural ODE, each scored by its tasks.
QUICK_CONTINUOUS = {"ct_rnn_mnist1d_irregular_quick": "mnist1d_irregular", "esn_mackey_glass_quick": "mackey_glass",
                    "neural_ode_mnist1d_quick": "mnist1d"}
# Video prediction: PredNet and PreCNet on the 32x32 Moving Fashion-MNIST, each scored against
# copying the last frame; and the predictive-coding learning rule on a feed-forward classifier.
QUICK_VIDEO = {"prednet_moving_fmnist_quick": "moving_fmnist_32", "precnet_moving_fmnist_quick": "moving_fmnist_32"}
QUICK_LEARNING_RULES = {"pc_mlp_fmnist_quick": "fashion_mnist"}
# Meta-learning: MAML on few-shot episodes and on sinusoid functions, each scored by few_shot.
QUICK_META = {"maml_mnist1d_fewshot_quick": "mnist1d_fewshot", "maml_sinusoid_quick": "sinusoid"}
QUICK_OOD = {"ood_energy_oe_fmnist_quick": "energy_oe", "ood_laplace_fmnist_quick": "laplace",
             "ood_ensemble_fmnist_quick": "ensemble"}
QUICK_LENGTH = ("rims_seq_fmnist_quick",)
# Hebbian layers trained without backprop, probed like a self-supervised encoder.
QUICK_HEBBIAN = {"softhebb_fmnist_quick": "conv", "krotov_fmnist_quick": "dense"}
QUICK_SPARSE = ("sparse_cnn_fmnist_quick",)
QUICK_DST = ("rigl_cnn_fmnist_quick",)
QUICK_DENDRITES = ("continual_permuted_fmnist_dendrites_quick",)
# Nengo: the communication channel (PES with Voja) and the classifier on principal components.
QUICK_NENGO = {"nengo_channel_quick": "white_signal", "nengo_fmnist_quick": "fashion_mnist"}
# Reinforcement learning: each value-based kind acting in CartPole, an environment fetched as a dataset.
QUICK_RL = {"dqn_cartpole_quick": "dqn", "c51_cartpole_quick": "c51", "qr_dqn_cartpole_quick": "qr_dqn"}
# The dopamine code: distributional TD units against the classical null, on both reward tasks.
QUICK_DOPAMINE = {"dopamine_magnitudes_quick": "reward_magnitudes",
                  "dopamine_probabilities_quick": "reward_probabilities"}
# Continual learners: one quick spec per strategy, each on the encoder of a quick self-supervised spec.
CONTINUAL_STRATEGIES = ("naive", "joint", "cumulative", "ewc", "si", "lwf", "replay", "gdumb", "ar1", "remind",
                        "energy")
QUICK_CONTINUAL = {f"continual_split_fmnist_{s}_quick": s for s in CONTINUAL_STRATEGIES}
QUICK_SSL = ("swav_fmnist_quick",)
# Vokenization: the matcher on swav_fmnist_quick's encoder vokenizes a corpus (its evaluate stage writes
# it), a language model trains on it and is probed on both text tasks. (Its MLM-alone and random-voken
# twins differ only in `vokens`, tested in tests/models/test_voken.py: the chain runs one, for time.)
QUICK_VOKEN_LMS = {"voken_lm_vokens_quick": "matched"}
QUICK_VOKEN = ("voken_matcher_fmnist_quick", *QUICK_VOKEN_LMS)

# A spec that trains nothing of its own: few-label fine-tuning on tiny_a's encoder.
FEWLABEL = """\
name: tiny_fewlabel
upstream: {encoder: tiny_a}
downstream:
  - {kind: finetune, fractions: [0.005], epochs: 3, min_steps: 4, val_examples: 200}
"""

pytestmark = [pytest.mark.slow, needs_fashion_mnist]


def environment() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg",
           "DVC_NO_ANALYTICS": "1"}
    env.pop("PIPELINE_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def sh(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=environment(), timeout=1800)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


# The quick specs are chained in two projects, each a git + DVC repository of its own, whose `dvc repro`
# run side by side: a quick spec's stage is mostly a process start (importing torch, Lightning and
# MLflow), which takes one core, so two chains at once take about half the time of one on two cores.
# "families": the tiny specs and a quick spec of each family that trains from scratch; "chained": the
# specs that build on swav_fmnist_quick (continual learners, vokenization), with it.
PROJECTS = {
    "families": (*QUICK_CPC, *QUICK_SPIKING, *QUICK_CONTINUOUS, *QUICK_VIDEO, *QUICK_LEARNING_RULES, *QUICK_META,
                 *QUICK_OOD, *QUICK_LENGTH, *QUICK_HEBBIAN,
                 *QUICK_SPARSE, *QUICK_DST, *QUICK_DENDRITES, *QUICK_NENGO,
                 *QUICK_RL, *QUICK_DOPAMINE),
    "chained": (*QUICK_SSL, *QUICK_CONTINUAL, *QUICK_VOKEN),
}


def new_project(folder: Path, specs: tuple[str, ...], tiny: bool) -> Path:
    """A git + DVC repository holding `specs` (copied from specs/) and, with `tiny`, two tiny specs
    and one building on one of them; its dvc.yaml is the one `pipeline dvc` writes from them."""
    (folder / "dvc.yaml").write_text("stages: {}\n")
    (folder / "specs").mkdir()
    shutil.copy(ROOT / "specs" / "schema.json", folder / "specs")
    if tiny:
        for name in ("tiny_a", "tiny_b"):
            (folder / "specs" / f"{name}.yaml").write_text(TINY.format(name=name))
        (folder / "specs" / "tiny_fewlabel.yaml").write_text(FEWLABEL)
    for name in specs:
        shutil.copy(ROOT / "specs" / f"{name}.yaml", folder / "specs")
    sh("pipeline", "dvc", cwd=folder)
    sh("pipeline", "dvc", "--check", cwd=folder)
    sh("git", "init", "-q", cwd=folder)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init", cwd=folder)
    sh("dvc", "init", "-q", cwd=folder)
    return folder


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[str, Path]:
    """Both projects after their `dvc repro`, run at once (one torch thread each)."""
    made = {name: new_project(tmp_path_factory.mktemp(name), specs, tiny=name == "families")
            for name, specs in PROJECTS.items()}
    env = {**environment(), "OMP_NUM_THREADS": "1"}
    # Each writes to a file: a pipe read only after the other process ends would fill and stall it.
    logs = {name: tmp_path_factory.mktemp("logs") / f"{name}.log" for name in made}
    running = {}
    try:
        for name, folder in made.items():
            with open(logs[name], "w") as log:
                running[name] = subprocess.Popen(["dvc", "repro"], cwd=folder, env=env, stdout=log,
                                                 stderr=subprocess.STDOUT)
        for process in running.values():
            process.wait(timeout=1800)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
    for name, process in running.items():
        assert process.returncode == 0, f"dvc repro of the {name} project failed:\n{logs[name].read_text()[-6000:]}"
    return made


@pytest.fixture(scope="module")
def repo(projects: dict[str, Path]) -> Path:
    """The project of the tiny specs and a quick spec of every family that trains from scratch."""
    return projects["families"]


@pytest.fixture(scope="module")
def chained(projects: dict[str, Path]) -> Path:
    """The project of swav_fmnist_quick and the specs that build on its encoder."""
    return projects["chained"]


def mlflow_runs(repo: Path, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    return client, {r.data.tags["stage"]: r for r in client.search_runs([found.experiment_id])}, \
        client.search_runs([found.experiment_id])


def test_repro_logs_linked_runs_with_params_metrics_tags_and_artifacts(repo: Path):
    client, runs, every = mlflow_runs(repo, "tiny_a")
    assert len(every) == 2
    assert set(runs) == {"pretrain", "evaluate"}
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    for run in (pretrain, evaluate):
        assert run.info.status == "FINISHED"
        assert run.data.params["model.prototypes"] == "10"
        assert run.data.tags["spec_hash"]
        assert run.data.tags["git_commit"] != "unknown"
        assert run.info.artifact_uri.startswith((repo / "mlartifacts").as_uri())
    assert evaluate.data.tags["upstream_run_id"] == pretrain.info.run_id
    assert pretrain.data.tags["collapse"] in ("true", "false")
    assert "train/loss_epoch" in pretrain.data.metrics
    history = client.get_metric_history(pretrain.info.run_id, "train/loss_epoch")
    assert len(history) == 2  # one point per epoch
    # 600 labelled Fashion-MNIST images: every feature set is far above chance (0.1), none perfect.
    for key in ("linear_probe/encoder", "linear_probe/raw_input", "linear_probe/random_encoder",
                "knn/encoder", "knn/raw_input", "knn/random_encoder"):
        assert 0.5 < evaluate.data.metrics[key] < 0.95, key
    pretrain_files = {a.path for a in client.list_artifacts(pretrain.info.run_id)}
    assert {"encoder.pt", "spec.yaml", "spec", "training_curves.png"} <= pretrain_files
    evaluate_files = {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert {"embedding.png", "confusion_linear_probe.png", "evaluate.json"} <= evaluate_files


@pytest.mark.parametrize(("name", "dataset"), QUICK_CPC.items())
def test_cpc_chains_to_its_probes_like_any_model(repo: Path, name: str, dataset: str):
    client, runs, _ = mlflow_runs(repo, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    assert evaluate.data.tags["upstream_run_id"] == pretrain.info.run_id
    offsets = [k for k in pretrain.data.metrics if k.startswith("train/infonce_acc_k") and k.endswith("_epoch")]
    assert len(offsets) == (2 if name == "cpc_fmnist_quick" else 3)
    plots = {"infonce_accuracy.png", "training_curves.png"}
    assert plots <= {a.path for a in client.list_artifacts(pretrain.info.run_id)}
    # Far above chance (0.1) on either dataset (raw MNIST-1D signals: about 0.3, as published).
    for key in ("encoder", "raw_input", "random_encoder"):
        assert 0.2 < evaluate.data.metrics[f"linear_probe/{key}"] < 0.95, key
    evaluated = json.loads((repo / "metrics" / name / "evaluate.json").read_text())
    assert evaluated["dataset"] == dataset
    report = (repo / "reports" / f"{name}.md").read_text()
    assert f"| {name} | {evaluated['model']} | {dataset} |" in report
    assert ("| mnist1d | GRU | 91% |" in report) == (dataset == "mnist1d")  # the published figures


@pytest.mark.parametrize(("name", "dataset"), QUICK_SPIKING.items())
def test_a_spiking_network_is_scored_itself_and_logs_its_spikes(repo: Path, name: str, dataset: str):
    client, runs, _ = mlflow_runs(repo, name)
    evaluate = runs["evaluate"]
    assert evaluate.info.status == "FINISHED"
    metrics = evaluate.data.metrics
    assert metrics["network/accuracy"] > 0.15  # chance is 0.1
    assert 0 < metrics["spike_stats/sparsity"] < 1
    rates = [key for key in metrics if key.startswith("spike_stats/firing_rate/")]
    assert len(rates) >= 2
    assert all(0 < metrics[key] <= 1 for key in rates)
    for key in ("spikes_per_sample", "synaptic_ops_per_sample", "ann_macs_per_sample", "energy_snn_nj",
                "energy_ann_nj", "energy_ratio_ann_over_snn"):
        assert metrics[f"spike_stats/{key}"] > 0, key
    if name.startswith("snn_temporal"):
        assert 0 < metrics["spike_stats/time_to_decision"]
        assert 0 < metrics["spike_stats/decided"] <= 1
    assert {"spike_raster.png", "membrane_trace.png", "embedding.png", "confusion_network.png"} <= {
        a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert "val/accuracy" in runs["pretrain"].data.metrics
    report = (repo / "reports" / f"{name}.md").read_text()
    model = json.loads((repo / "metrics" / name / "evaluate.json").read_text())["model"]
    network = f"{100 * metrics['network/accuracy']:.1f}%"
    assert f"| {name} | {model} | {dataset} | network | the network itself: **{network}** |" in report


@pytest.mark.parametrize(("name", "dataset"), QUICK_CONTINUOUS.items())
def test_a_continuous_time_or_reservoir_network_is_scored_by_its_tasks(repo: Path, name: str, dataset: str):
    client, runs, _ = mlflow_runs(repo, name)
    evaluate = runs["evaluate"]
    assert evaluate.info.status == "FINISHED"
    metrics = evaluate.data.metrics
    assert metrics["network_stats/parameters"] > 0
    assert metrics["network_stats/inference_ms_per_sequence"] > 0
    assert 0 < metrics["network_stats/synapses_used"] <= metrics["network_stats/synapses_dense"]
    files = {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    if dataset == "mackey_glass":  # a series: forecast, against persistence and ridge on lagged values
        for key in ("nrmse_one_step", "nrmse_free_running", "persistence_nrmse_one_step", "ridge_nrmse_one_step"):
            assert metrics[f"forecast/{key}"] > 0, key
        assert metrics["forecast/nrmse_one_step"] < metrics["forecast/persistence_nrmse_one_step"]
        assert "val/nrmse" in runs["pretrain"].data.metrics
        headline = "forecast | one-step NRMSE"
    else:
        assert metrics["network/accuracy"] > 0.15  # chance is 0.1
        assert "confusion_network.png" in files
        assert "val/accuracy" in runs["pretrain"].data.metrics
        headline = "network | the network itself"
    if name.startswith("ct_rnn"):  # its time constants; its accuracy as noise grows
        assert 0 < metrics["network_stats/tau_min"] <= metrics["network_stats/tau_max"]
        assert "noise_robustness/accuracy_noise_0.5" in metrics
        assert "noise_robustness.png" in files
    if name.startswith("neural_ode"):
        assert metrics["network_stats/nfe"] > 0
    model = json.loads((repo / "metrics" / name / "evaluate.json").read_text())["model"]
    assert f"| {name} | {model} | {dataset} | {headline}" in (repo / "reports" / f"{name}.md").read_text()


@pytest.mark.parametrize(("name", "dataset"), QUICK_VIDEO.items())
def test_a_video_predictor_is_scored_against_copying_the_last_frame(repo: Path, name: str, dataset: str):
    client, runs, _ = mlflow_runs(repo, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    assert {"val/mse_per_frame", "val/copy_last_mse_per_frame", "train/loss_epoch"} <= set(pretrain.data.metrics)
    assert "next_frame_mse.png" in {a.path for a in client.list_artifacts(pretrain.info.run_id)}
    metrics = evaluate.data.metrics
    for task in ("next_frame", "extrapolation"):
        for key in ("mse_per_frame", "copy_last_mse_per_frame", "mse_per_pixel", "psnr", "copy_last_psnr"):
            assert metrics[f"{task}/{key}"] > 0, key
        assert 0 < metrics[f"{task}/ssim"] <= 1
        assert 0 < metrics[f"{task}/copy_last_ssim"] <= 1
        assert metrics[f"{task}/sequences"] == 50
    for key in ("linear_encoder", "linear_random_encoder", "linear_raw_frames", "knn_encoder"):
        assert 0 < metrics[f"object_probe/{key}"] <= 1, key
    files = {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert {"next_frame_per_frame.png", "extrapolation_per_frame.png", "object_probe.png"} <= files
    assert any(f.startswith("next_frame_sequence_") and f.endswith(".png") for f in files)
    model = json.loads((repo / "metrics" / name / "evaluate.json").read_text())["model"]
    report = (repo / "reports" / f"{name}.md").read_text()
    assert f"| {name} | {model} | {dataset} | next_frame | next-frame MSE per frame: **" in report
    assert "copy last frame" in report


@pytest.mark.parametrize(("name", "dataset"), QUICK_LEARNING_RULES.items())
def test_a_network_trained_by_predictive_coding_is_scored_itself(repo: Path, name: str, dataset: str):
    client, runs, _ = mlflow_runs(repo, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    assert {"train/energy_start", "train/energy_end", "val/accuracy"} <= set(pretrain.data.metrics)
    assert evaluate.data.metrics["network/accuracy"] > 0.3  # chance is 0.1
    model = json.loads((repo / "metrics" / name / "evaluate.json").read_text())["model"]
    assert f"| {name} | {model} | {dataset} | network | the network itself" in (
        repo / "reports" / f"{name}.md").read_text()


@pytest.mark.parametrize(("name", "dataset"), QUICK_META.items())
def test_a_meta_learner_is_scored_on_tasks_it_never_saw(repo: Path, name: str, dataset: str):
    client, runs, _ = mlflow_runs(repo, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    metrics = evaluate.data.metrics
    files = {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert "few_shot_steps.png" in files
    if dataset == "sinusoid":
        assert "val/query_mse" in pretrain.data.metrics
        assert "few_shot_functions.png" in files
        for key in ("mse_steps_1", "pretrained_mse_steps_1", "pretrained_mse_steps_10"):
            assert metrics[f"few_shot/10shot/{key}"] > 0, key
        headline = "few_shot | query MSE after 1 step, K = 10"
    else:
        assert "val/query_accuracy" in pretrain.data.metrics
        for shots in (1, 5):
            for key in ("accuracy", "scratch", "centroid", "embedding"):
                assert 0 < metrics[f"few_shot/{shots}shot/{key}"] <= 1, key
            assert metrics[f"few_shot/{shots}shot/ci95"] > 0
        history = client.get_metric_history(evaluate.info.run_id, "few_shot/1shot_accuracy_vs_steps")
        assert [m.step for m in history] == [0, 1, 2]
        headline = "few_shot | 5-way 1-shot accuracy"
    model = json.loads((repo / "metrics" / name / "evaluate.json").read_text())["model"]
    assert f"| {name} | {model} | {dataset} | {headline}" in (repo / "reports" / f"{name}.md").read_text()


@pytest.mark.parametrize(("name", "method"), QUICK_OOD.items())
def test_an_ood_method_trains_and_is_scored_for_calibration_and_ood_detection(repo: Path, name: str, method: str):
    client, runs, _ = mlflow_runs(repo, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    trained, metrics = pretrain.data.metrics, evaluate.data.metrics
    if method == "energy_oe":  # the second phase, and what its margins are chosen on
        assert {"train/energy_in", "train/energy_out", "val_outliers/auroc_energy"} <= set(trained)
        assert len(client.get_metric_history(pretrain.info.run_id, "val_outliers/fpr95_energy")) == 2
    if method == "laplace":
        assert trained["laplace/prior_precision"] > 0
    assert 0 <= metrics["calibration/ece"] <= 1 and metrics["calibration/temperature"] > 0
    families = json.loads((repo / "metrics" / name / "evaluate.json").read_text())["ood_detection"]
    assert all(0 <= families[f"mean/{score}/auroc"] <= 1 for score in ("msp", "max_logit", "energy", "own"))
    files = {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert {"reliability.png", "ood_scores.png"} <= files
    report = (repo / "reports" / f"{name}.md").read_text()
    assert f"| {name} | ood_cnn | fashion_mnist | calibration | ECE (15 bins)" in report
    assert "| ood_detection | mean AUROC over" in report


@pytest.mark.parametrize("name", QUICK_LENGTH)
def test_rims_are_scored_at_longer_lengths_than_they_trained_at(repo: Path, name: str):
    client, runs, _ = mlflow_runs(repo, name)
    evaluate = runs["evaluate"]
    assert runs["pretrain"].info.status == evaluate.info.status == "FINISHED"
    scored = json.loads((repo / "metrics" / name / "evaluate.json").read_text())["length_generalization"]
    assert set(scored) == {f"accuracy_length_{n}" for n in (49, 64, 91, 144)}
    assert all(0 <= value <= 1 for value in scored.values())
    assert "length_generalization.png" in {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert f"| {name} | rims | seq_fmnist_14 | length_generalization | accuracy at length 144" in (
        repo / "reports" / f"{name}.md").read_text()


@pytest.mark.parametrize(("name", "layers"), QUICK_HEBBIAN.items())
def test_a_hebbian_network_learns_without_backprop_and_is_probed_beside_its_untrained_self(repo: Path, name: str,
                                                                                           layers: str):
    client, runs, _ = mlflow_runs(repo, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    # The probe against Hebbian epochs: untrained (step 0), then after each of the two epochs.
    history = client.get_metric_history(pretrain.info.run_id, "val/probe_accuracy")
    assert len(history) == 3 and history[0].step == 0
    assert all(0 < m.value <= 1 for m in history)
    assert "train/layer0_winning_units" in pretrain.data.metrics
    metrics = evaluate.data.metrics
    for key in ("encoder", "random_encoder", "raw_input"):
        assert 0 < metrics[f"linear_probe/{key}"] <= 1
    assert "training_curves.png" in {a.path for a in client.list_artifacts(pretrain.info.run_id)}
    assert f"| {name} | hebbian | fashion_mnist | linear_probe | linear probe" in (
        repo / "reports" / f"{name}.md").read_text()


@pytest.mark.parametrize("name", QUICK_SPARSE)
def test_a_sparse_network_is_scored_for_noise_with_its_parameter_counts(repo: Path, name: str):
    client, runs, _ = mlflow_runs(repo, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    assert pretrain.data.metrics["nonzero_parameters"] < pretrain.data.metrics["parameters"]
    metrics = evaluate.data.metrics
    assert 0 < metrics["network/accuracy"] <= 1
    # Three levels of pixel noise on 1,000 test images: at most 3,000 correct.
    assert 0 < metrics["noise_robustness/noise_score"] <= 3000
    assert "noise_robustness.png" in {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert f"| {name} | sparse_cnn | fashion_mnist | network |" in (repo / "reports" / f"{name}.md").read_text()


@pytest.mark.parametrize("name", QUICK_DST)
def test_dynamic_sparse_training_keeps_its_density_and_counts_its_flops(repo: Path, name: str):
    import torch

    _, runs, _ = mlflow_runs(repo, name)
    pretrain = runs["pretrain"]
    assert pretrain.info.status == runs["evaluate"].info.status == "FINISHED"
    metrics = pretrain.data.metrics
    assert metrics["sparsity/density"] == pytest.approx(0.2, abs=1e-3)
    assert metrics["sparsity/updates"] > 0
    assert 0.2 < metrics["sparsity/train_flops_vs_dense"] < 1
    weights = torch.load(repo / "artifacts" / name / "pretrain" / "model.pt", weights_only=True)
    sparse = [w for key, w in weights.items() if key.endswith("weight") and w.dim() > 1]
    nonzero = sum(int((w != 0).sum()) for w in sparse) / sum(w.numel() for w in sparse)
    assert nonzero <= 0.2 + 1e-3


@pytest.mark.parametrize("name", QUICK_DENDRITES)
def test_active_dendrites_learn_a_permuted_stream_with_inferred_contexts(repo: Path, name: str):
    client, runs, _ = mlflow_runs(repo, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    history = client.get_metric_history(pretrain.info.run_id, "continual/average_accuracy_seen")
    assert [m.step for m in history] == [0, 1, 2]
    assert evaluate.data.metrics["continual/average_accuracy"] > 0.15  # chance is 0.1


@pytest.mark.parametrize(("name", "dataset"), QUICK_NENGO.items())
def test_a_nengo_network_learns_online_and_is_scored_beside_its_least_squares_and_rate_twins(
        repo: Path, name: str, dataset: str):
    import torch

    client, runs, _ = mlflow_runs(repo, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    channel = dataset == "white_signal"
    metric = "rmse" if channel else "accuracy"
    # The error (or accuracy) over simulated time, one point per batch, for every readout.
    history = client.get_metric_history(pretrain.info.run_id, f"train/{metric}_spiking_pes_step")
    assert len(history) >= 4  # every batch: 8 of 2 s of signal, 5 of 100 images
    scores = {key: value for key, value in evaluate.data.metrics.items() if key.startswith("nengo_readout/")}
    for readout in ("spiking_pes", "spiking_least_squares", "rate_pes", "rate_least_squares"):
        assert f"nengo_readout/{metric}_{readout}" in scores
    if channel:  # learnt from zero decoders, it transmits the signal better than silence
        assert scores["nengo_readout/rmse_spiking_pes"] < 0.7 * scores["nengo_readout/rmse_silent"]
    else:
        assert scores["nengo_readout/accuracy_spiking_least_squares"] > 0.3  # chance is 0.1
    weights = torch.load(repo / "artifacts" / name / "pretrain" / "model.pt", weights_only=True)
    assert weights["encoder.learned"].abs().sum() > 0  # what PES learnt is in the weight file
    pictures = {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert "spike_raster.png" in pictures
    assert ("decoded_signal.png" if channel else "confusion_spiking_pes.png") in pictures
    assert f"| {name} | nengo | {dataset} | nengo_readout | spiking, PES-learned" in (
        repo / "reports" / f"{name}.md").read_text()


@pytest.mark.parametrize(("name", "kind"), QUICK_RL.items())
def test_an_agent_acts_in_its_environment_and_is_scored_beside_a_random_policy(repo: Path, name: str, kind: str):
    client, runs, _ = mlflow_runs(repo, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    # The return of each training episode, against environment steps, up to the 3,000 taken.
    episodes = client.get_metric_history(pretrain.info.run_id, "train/episode_return")
    assert len(episodes) >= 10 and all(1 <= m.value <= 500 for m in episodes)
    assert all(0 < m.step <= 3000 for m in episodes)
    assert len(client.get_metric_history(pretrain.info.run_id, "val/episode_return")) == 2
    metrics = evaluate.data.metrics
    assert metrics["episodic_return/iqm_low"] <= metrics["episodic_return/iqm_return"] <= metrics[
        "episodic_return/iqm_high"]
    assert metrics["episodic_return/random_mean_return"] > 0
    assert "episode_returns.png" in {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    if kind == "dqn":  # the hidden layer's activity on the environment's frames, against untrained
        assert 0 < metrics["activation_sparsity/population_sparsity"] < 1
        assert "activation_sparsity/untrained_lifetime_sparsity" in metrics
    assert f"| {name} | {kind} | cartpole_v1 | episodic_return | IQM return" in (
        repo / "reports" / f"{name}.md").read_text()


@pytest.mark.parametrize(("name", "dataset"), QUICK_DOPAMINE.items())
def test_distributional_td_units_show_the_dopamine_code_and_the_classical_null_does_not(repo: Path, name: str,
                                                                                         dataset: str):
    client, runs, _ = mlflow_runs(repo, name)
    evaluate = runs["evaluate"]
    assert runs["pretrain"].info.status == evaluate.info.status == "FINISHED"
    metrics = evaluate.data.metrics
    pictures = {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    if dataset == "reward_magnitudes":
        assert metrics["dopamine_code/reversal_reliability"] > 0.8
        assert metrics["dopamine_code/reversal_reliability_classical"] < 0.6
        assert metrics["dopamine_code/decoded_wasserstein"] < metrics["dopamine_code/wasserstein_of_the_mean"]
        assert {"response_curves.png", "reversal_reliability.png", "asymmetry_vs_reversal.png",
                "decoded_distribution.png"} <= pictures
    else:
        assert metrics["dopamine_code/optimism_vs_tau"] > 0.8
        assert metrics["dopamine_code/optimism_spread_classical"] < metrics["dopamine_code/optimism_spread"]
        assert "optimism.png" in pictures
    assert f"| {name} | distributional_td | {dataset} | dopamine_code |" in (
        repo / "reports" / f"{name}.md").read_text()


@pytest.mark.parametrize(("name", "strategy"), QUICK_CONTINUAL.items())
def test_a_continual_learner_chains_from_a_self_supervised_spec_and_reports_its_stream(chained: Path, name: str,
                                                                                     strategy: str):
    client, runs, _ = mlflow_runs(chained, name)
    pretrain, evaluate = runs["pretrain"], runs["evaluate"]
    assert pretrain.info.status == evaluate.info.status == "FINISHED"
    # Built on the self-supervised spec's trained encoder: the lineage is in MLflow.
    _, upstream_runs, _ = mlflow_runs(chained, "swav_fmnist_quick")
    assert pretrain.data.tags["upstream.encoder.run_id"] == upstream_runs["pretrain"].info.run_id
    history = client.get_metric_history(pretrain.info.run_id, "continual/average_accuracy_seen")
    assert [m.step for m in history] == ([0] if strategy == "joint" else [0, 1, 2, 3, 4])
    metrics = evaluate.data.metrics
    assert 0 <= metrics["continual/average_accuracy"] <= 1
    assert "continual/memory_bytes" in metrics
    if strategy != "joint":
        assert "continual/forgetting" in metrics
        assert "continual/backward_transfer" in metrics
    keeps = {"replay", "gdumb", "ar1", "remind", "cumulative"}
    assert (metrics["continual/memory_samples"] > 0) == (strategy in keeps)
    files = {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert {"accuracy_matrix.png", "accuracy_over_experiences.png"} <= files
    assert f"| {name} | continual | fashion_mnist | continual | {strategy}: average accuracy" in (
        chained / "reports" / f"{name}.md").read_text()


def test_the_vokenization_chain_runs_matcher_vokenize_language_models_and_text_probes(chained: Path):
    import numpy as np

    matcher = "voken_matcher_fmnist_quick"
    client, runs, _ = mlflow_runs(chained, matcher)
    _, ssl, _ = mlflow_runs(chained, "swav_fmnist_quick")
    assert runs["pretrain"].data.tags["upstream.encoder.run_id"] == ssl["pretrain"].info.run_id
    metrics = runs["evaluate"].data.metrics
    for key in ("caption_to_image_r1_trained", "caption_to_image_r5_untrained", "image_to_caption_r1_trained"):
        assert 0 <= metrics[f"retrieval/{key}"] <= 1, key
    assert metrics["retrieval/r1_chance"] == 1 / 200
    assert 0 < metrics["vokenize/pool_coverage"] <= 1
    assert metrics["vokenize/pool"] == 100
    assert {"retrieval_examples.png", "vokens.png", "dataset.json"} <= {
        a.path for a in client.list_artifacts(runs["evaluate"].info.run_id)}
    # The vokenized corpus: integer token ids, each real token's voken in the pool, IGNORE elsewhere.
    folder = chained / "artifacts" / matcher / "evaluate" / "dataset"
    described = json.loads((folder / "dataset.json").read_text())
    assert described["modality"] == "text"
    assert len(described["classes"]) == 100
    assert {f["name"]: f["dtype"] for f in described["fields"]} == {"input": "int64", "vokens": "int64",
                                                                    "word_class": "int64"}
    tokens, vokens = np.load(folder / "train.input.npy"), np.load(folder / "train.vokens.npy")
    assert tokens.dtype == vokens.dtype == np.int64
    assert len(tokens) == 2000
    # [PAD], [CLS], [SEP], [MASK] get no voken, nor a word of a type no training caption holds (the
    # matcher never trained its embedding); the others get one from the pool.
    special = np.isin(tokens, [0, 2, 3, 4])
    in_captions = np.isin(tokens, np.load(chained / "data" / "fmnist_scenes" / "t_train.npy"))
    assert (vokens[special | ~in_captions] == -100).all()
    assert ((vokens == -100) | ((vokens >= 0) & (vokens < 100))).all()
    assert (vokens[~special] != -100).mean() > 0.1
    for name, mode in QUICK_VOKEN_LMS.items():
        client, lm, _ = mlflow_runs(chained, name)
        assert lm["pretrain"].data.tags["upstream.data.run_id"] == runs["evaluate"].info.run_id
        assert ("train/voken_loss" in lm["pretrain"].data.metrics) == (mode != "none")
        probes = lm["evaluate"].data.metrics
        for task in ("text_probe_1", "text_probe_2"):
            assert 0 < probes[f"{task}/trained"] <= 1
            assert 0 < probes[f"{task}/untrained"] <= 1
        assert {"confusion_wordnet_supersense.png", "confusion_grounded_facts.png"} <= {
            a.path for a in client.list_artifacts(lm["evaluate"].info.run_id)}
        report = (chained / "reports" / f"{name}.md").read_text()
        assert f"| {name} | voken_lm | wordnet_corpus_vokenized | text_probe_2 | grounded facts (probe)" in report


def test_outputs_and_report(repo: Path):
    assert (repo / "artifacts" / "tiny_a" / "pretrain" / "encoder.pt").is_file()
    assert (repo / "artifacts" / "tiny_a" / "pretrain" / "checkpoints" / "last.ckpt").is_file()
    evaluated = json.loads((repo / "metrics" / "tiny_a" / "evaluate.json").read_text())
    assert set(evaluated["linear_probe"]) >= {"encoder", "raw_input", "random_encoder"}
    report = (repo / "reports" / "tiny_a.md").read_text()
    probe = f"{100 * evaluated['linear_probe']['encoder']:.1f}%"
    assert f"| tiny_a | swav | fashion_mnist | linear_probe | linear probe: **{probe}** |" in report
    assert evaluated["run_id"] in report
    metrics = sh("dvc", "metrics", "show", cwd=repo).stdout
    assert "linear_probe.encoder" in metrics
    assert "knn.encoder" in metrics


def test_second_repro_does_nothing_and_one_changed_spec_reruns_alone(repo: Path):
    again = sh("dvc", "repro", cwd=repo).stdout
    assert "Running stage" not in again
    spec = repo / "specs" / "tiny_b.yaml"
    spec.write_text(spec.read_text().replace("prototypes: 10", "prototypes: 12"))
    changed = sh("dvc", "repro", cwd=repo).stdout
    ran = {line.split("'")[1] for line in changed.splitlines() if line.startswith("Running stage")}
    assert ran == {"pretrain@tiny_b", "evaluate@tiny_b", "report@tiny_b"}
    assert len(mlflow_runs(repo, "tiny_a")[2]) == 2
    assert len(mlflow_runs(repo, "tiny_b")[2]) == 4


def test_a_spec_builds_on_another_and_mlflow_shows_the_lineage(repo: Path):
    client, runs, every = mlflow_runs(repo, "tiny_fewlabel")
    assert set(runs) == {"evaluate"}  # it trains nothing of its own
    assert len(every) == 1
    upstream = mlflow_runs(repo, "tiny_a")[1]["pretrain"]
    evaluate = runs["evaluate"]
    assert evaluate.data.tags["upstream.encoder.run_id"] == upstream.info.run_id
    assert evaluate.data.tags["upstream.encoder.spec"] == "tiny_a"
    assert evaluate.data.tags["upstream_run_id"] == upstream.info.run_id
    metrics = evaluate.data.metrics
    assert metrics["finetune/labels_0.5pct/examples"] == 270  # 0.5% of 54000, 27 of each class
    for arm in ("pretrained", "scratch"):  # a few steps of training: above chance (0.1), far from done
        assert metrics[f"finetune/labels_0.5pct/{arm}"] > 0.15, arm
    for arm in ("frozen_probe", "raw_input_probe"):
        assert metrics[f"finetune/labels_0.5pct/{arm}"] > 0.5, arm
    assert {"finetune_accuracy.png", "finetune_validation.png"} <= {
        a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert "fine-tuned, 0.5% labels" in (repo / "reports" / "tiny_fewlabel.md").read_text()


def test_the_curves_reach_dvc_plots(repo: Path):
    shown = sh("dvc", "plots", "show", "--json", cwd=repo).stdout
    assert "metrics/tiny_a/plots/train_loss_epoch.csv" in shown


def test_a_downstream_change_keeps_the_training_and_an_upstream_change_reruns_the_downstream(repo: Path):
    spec = repo / "specs" / "tiny_b.yaml"
    spec.write_text(spec.read_text().replace("k: 5", "k: 7"))
    changed = sh("dvc", "repro", cwd=repo)
    ran = {line.split("'")[1] for line in changed.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"pretrain@tiny_b", "evaluate@tiny_b", "report@tiny_b"}
    assert "is current (same configuration, code and upstream): kept" in changed.stderr
    tiny_b = mlflow_runs(repo, "tiny_b")[2]
    assert sum(r.data.tags["stage"] == "pretrain" for r in tiny_b) == 2  # no new training

    spec = repo / "specs" / "tiny_a.yaml"
    spec.write_text(spec.read_text().replace("prototypes: 10", "prototypes: 11"))
    changed = sh("dvc", "repro", cwd=repo).stdout
    ran = {line.split("'")[1] for line in changed.splitlines() if line.startswith("Running stage")}
    assert ran == {"pretrain@tiny_a", "evaluate@tiny_a", "report@tiny_a", "evaluate@tiny_fewlabel",
                   "report@tiny_fewlabel"}


def test_an_experiment_with_a_param_set_through_dvc_trains_what_pipeline_set_would(repo: Path):
    """`dvc exp run --set-param specs/X.yaml:a.b=v` edits the spec's field as `--set a.b=v` would:
    the training it runs is of the same resolved spec, and `dvc exp show` lists the field."""
    from pipeline.spec.load import dump, load

    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "chain", cwd=repo)
    sh("dvc", "exp", "run", "--set-param", "specs/tiny_b.yaml:train.max_epochs=1", "report@tiny_b", cwd=repo)
    made = (repo / "artifacts" / "tiny_b" / "pretrain" / "spec.yaml").read_text()
    sh("git", "checkout", "specs/tiny_b.yaml", cwd=repo)  # the spec as committed, then --set
    assert made == dump(load(repo / "specs" / "tiny_b.yaml", ["train.max_epochs=1"]))
    shown = sh("dvc", "exp", "show", "--csv", cwd=repo).stdout
    assert "train.max_epochs" in shown


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.is_file() and not os.environ.get("CI"),
                    reason="Debian's chromium is not installed (make test installs it where apt-get can)")
def test_ui_in_a_real_browser_shows_the_runs_the_probe_accuracy_and_the_embedding(repo: Path):
    """`pipeline ui` on the chain's store, driven in headless Chromium: the experiment lists both
    runs, the evaluate run's page shows its probe accuracy, and its artifacts show the embedding."""
    import socket
    import time

    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, runs, _ = mlflow_runs(repo, "tiny_a")
    evaluate = runs["evaluate"]
    accuracy = str(evaluate.data.metrics["linear_probe/encoder"])[:5]  # the UI prints the full value
    shots = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "reports" / "test-artifacts"))
    shots.mkdir(parents=True, exist_ok=True)

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PIPELINE_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    server = subprocess.Popen([str(BIN / "pipeline"), "ui", "--port", str(port)], cwd=repo, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            deadline = time.monotonic() + 120
            while True:  # the server takes a few seconds to come up
                try:
                    page.goto(f"{base}/#/experiments/{evaluate.info.experiment_id}/runs?workflowType=machine_learning")
                    break
                except Exception:  # connection refused until it listens
                    assert server.poll() is None, server.stdout.read()
                    assert time.monotonic() < deadline, "the UI did not answer within 120 s"
                    time.sleep(0.5)
            # (tiny_a has been trained twice by now: its spec was changed by an earlier test.)
            page.get_by_role("link", name="tiny_a/pretrain").first.wait_for(timeout=60_000)
            print(f"pipeline ui -> runs table in the browser: {time.monotonic() - started:.1f} s")
            page.screenshot(path=str(shots / "ui_experiment.png"))
            expect(page.get_by_role("link", name="tiny_a/evaluate").first).to_be_visible()

            page.goto(f"{base}/#/experiments/{evaluate.info.experiment_id}/runs/{evaluate.info.run_id}")
            expect(page.get_by_text("linear_probe/encoder", exact=True)).to_be_visible(timeout=30_000)
            expect(page.get_by_text(evaluate.info.run_id).first).to_be_visible()
            expect(page.get_by_text(accuracy).first).to_be_visible()
            page.screenshot(path=str(shots / "ui_run.png"), full_page=True)

            page.get_by_text("Artifacts", exact=True).click()
            page.get_by_text("embedding.png", exact=True).first.click()
            image = page.locator("img[src^='blob:']").first
            expect(image).to_be_visible(timeout=30_000)
            assert image.evaluate("img => img.complete && img.naturalWidth") > 100  # a real, decoded PNG
            page.screenshot(path=str(shots / "ui_embedding.png"))
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_change_to_the_vokenizer_reruns_the_language_models_but_keeps_the_matcher_training(chained: Path):
    import numpy as np

    matcher = "voken_matcher_fmnist_quick"
    before = len(mlflow_runs(chained, matcher)[2])
    spec = chained / "specs" / f"{matcher}.yaml"
    spec.write_text(spec.read_text().replace("max_sentences: 2000", "max_sentences: 1500"))
    changed = sh("dvc", "repro", cwd=chained)
    ran = {line.split("'")[1] for line in changed.stdout.splitlines() if line.startswith("Running stage")}
    lms = {f"{stage}@{name}" for name in QUICK_VOKEN_LMS for stage in ("pretrain", "evaluate", "report")}
    assert ran == {f"pretrain@{matcher}", f"evaluate@{matcher}", f"report@{matcher}", *lms}
    # Its training stage ran (the spec is its params) and kept the training: only a downstream task
    # changed. One new MLflow run, the evaluation's; the corpus rewritten, and the models retrained on it.
    assert "is current (same configuration, code and upstream): kept" in changed.stdout + changed.stderr
    assert len(mlflow_runs(chained, matcher)[2]) == before + 1
    folder = chained / "artifacts" / matcher / "evaluate" / "dataset"
    assert len(np.load(folder / "train.input.npy")) == 1500

    def newest(name: str, stage: str):
        return max((r for r in mlflow_runs(chained, name)[2] if r.data.tags["stage"] == stage),
                   key=lambda r: r.info.start_time)

    for name in QUICK_VOKEN_LMS:
        assert newest(name, "pretrain").data.tags["upstream.data.run_id"] == newest(matcher, "evaluate").info.run_id
