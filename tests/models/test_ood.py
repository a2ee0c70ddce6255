"""Out of distribution: the detection and calibration figures against hand-computed values, the
energy score, temperature scaling, the Laplace predictive against its closed form and laplace-torch,
the ensemble's and MC dropout's predictive, the energy margins in training, the OOD datasets'
generators and the outlier-exposure / test split, and both tasks on other families' classifiers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from pipeline import plugins
from pipeline.data.datamodule import Splits
from pipeline.data.fetch import fetch_dataset
from pipeline.models.ood import OODDetectionSpec, OODNetSpec, OutlierExposureSpec
from pipeline.models.ood import data as ood_data
from pipeline.models.ood import scores as S
from pipeline.models.ood.datasets import DATASETS, OUTLIER_NAMES, TEST_NAMES
from pipeline.models.ood.module import OODNet, last_layer_jacobian, probit_predictive
from pipeline.spec.components import TrainSpec
from tests.conftest import needs_fashion_mnist
from tests.test_resume import finish, pipeline

ROOT = Path(__file__).resolve().parents[2]


# --- figures ---------------------------------------------------------------------------------------

def test_detection_figures_match_hand_computed_values():
    inside, outside = np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.65, 0.5, 0.1])
    figures = S.detection(inside, outside)
    assert figures["auroc"] == pytest.approx(11 / 12)  # 0.6 loses only to 0.65
    # Ranked: P P P N P N N; precision at each positive 1, 1, 1, 4/5.
    assert figures["aupr"] == pytest.approx((1 + 1 + 1 + 0.8) / 4)
    # Keeping all four (>= 95%) in-distribution scores needs threshold 0.6; 0.65 passes it.
    assert figures["fpr95"] == pytest.approx(1 / 3)
    perfect = S.detection(np.array([3.0, 2.0]), np.array([1.0, 0.0]))
    assert perfect == {"auroc": 1.0, "aupr": 1.0, "fpr95": 0.0}


def test_ece_matches_a_hand_made_reliability_table():
    # Bin (0.5, 0.6]: confidences 0.55 (right), 0.6 (wrong): accuracy 0.5, confidence 0.575.
    # Bin (0.9, 1.0]: 0.95 and 0.92, both right: accuracy 1, confidence 0.935.
    probs = torch.tensor([[0.55, 0.45], [0.6, 0.4], [0.05, 0.95], [0.92, 0.08]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0])
    table = S.reliability(probs, labels, bins=10)
    assert table.ece == pytest.approx((2 * 0.075 + 2 * 0.065) / 4)
    assert table.counts.tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    assert table.accuracy[5] == 0.5 and table.confidence[9] == pytest.approx(0.935)


def test_ece_agrees_with_torchmetrics_and_nll_brier_with_their_definitions():
    from torchmetrics.functional.classification import multiclass_calibration_error

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 5, generator=generator) * 2
    labels = torch.randint(0, 5, (500,), generator=generator)
    probs = logits.softmax(dim=1)
    expected = multiclass_calibration_error(probs, labels, num_classes=5, n_bins=15, norm="l1").item()
    assert S.reliability(probs, labels, 15).ece == pytest.approx(expected, abs=1e-6)
    assert S.nll(probs.log(), labels) == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    one_hot = F.one_hot(labels, 5).float()
    assert S.brier(probs, labels) == pytest.approx(((probs - one_hot) ** 2).sum(1).mean().item(), rel=1e-5)


def test_energy_is_minus_t_logsumexp():
    logits = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 5.0]], dtype=torch.float64)
    for t in (1.0, 2.5):
        expected = [-t * math.log(sum(math.exp(v / t) for v in row)) for row in logits.tolist()]
        assert S.energy(logits, t).tolist() == pytest.approx(expected)


def test_energy_margin_loss_is_liu_et_al_s_hinge():
    e_in, e_out = torch.tensor([-30.0, -20.0]), torch.tensor([-10.0, -2.0])
    # In: only -20 is above m_in = -25 (by 5); out: only -10 is below m_out = -7 (by 3).
    assert S.energy_margin_loss(e_in, e_out, -25.0, -7.0).item() == pytest.approx(25 / 2 + 9 / 2)


def test_temperature_scaling_recovers_the_temperature_that_sharpened_the_logits():
    generator = torch.Generator().manual_seed(1)
    true_logits = torch.randn(20_000, 4, generator=generator, dtype=torch.float64)
    labels = torch.multinomial(true_logits.softmax(dim=1), 1, generator=generator).squeeze(1)
    assert S.fit_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.05)


# --- Laplace ---------------------------------------------------------------------------------------

def _linear_problem():
    torch.manual_seed(0)
    features, classes = 3, 2
    x = torch.randn(40, features)
    y = (x[:, 0] + 0.3 * torch.randn(40) > 0).long()
    model = nn.Sequential(nn.Flatten(), nn.Linear(features, classes))
    optimiser = torch.optim.LBFGS(model.parameters(), max_iter=50)

    def closure():
        optimiser.zero_grad()
        loss = F.cross_entropy(model(x), y) + 1e-3 * sum((p ** 2).sum() for p in model.parameters())
        loss.backward()
        return loss

    optimiser.step(closure)
    return model, x, y


def test_laplace_predictive_on_a_linear_model_matches_its_closed_form_and_laplace_torch():
    from laplace import Laplace
    from torch.utils.data import DataLoader, TensorDataset

    model, x, y = _linear_problem()
    prior = 2.0
    la = Laplace(model, "classification", subset_of_weights="last_layer", hessian_structure="full",
                 prior_precision=prior)
    la.fit(DataLoader(TensorDataset(x, y), batch_size=16))
    head = model[1]
    with torch.no_grad():
        probs = head(x).softmax(dim=1).double()
    jacobian = last_layer_jacobian(x.double(), 2)  # features = inputs for a linear model
    # The GGN of the summed cross-entropy: sum_n J_n^T (diag p_n - p_n p_n^T) J_n, plus the prior.
    curvature = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]
    precision = torch.einsum("ncp,ncd,ndq->pq", jacobian, curvature, jacobian) + prior * torch.eye(8,
                                                                                                   dtype=torch.float64)
    covariance = torch.linalg.inv(precision)
    assert torch.allclose(la.posterior_covariance.double(), covariance, atol=1e-5)
    test_x = torch.randn(5, 3)
    j = last_layer_jacobian(test_x.double(), 2)
    variance = torch.einsum("bcp,pq,bcq->bc", j, covariance, j)
    with torch.no_grad():
        ours = probit_predictive(head(test_x).double(), variance).exp()
        theirs = la(test_x, pred_type="glm", link_approx="probit").double()
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, head(test_x).softmax(dim=1).double(), atol=1e-3)  # the posterior matters


def test_ood_net_keeps_laplace_torch_s_posterior_and_predicts_with_it(tiny_splits: Splits):
    spec = OODNetSpec(channels=[4], hidden=8, laplace={"hessian": "full", "prior": "marglik"})
    torch.manual_seed(0)
    model = OODNet(spec, TrainSpec(), (1, 28, 28), 10)
    measured = model.fit_laplace(tiny_splits)
    assert measured["laplace/prior_precision"] > 0
    covariance = model.laplace_covariance
    assert covariance.shape == (10 * 9, 10 * 9) and torch.allclose(covariance, covariance.T, atol=1e-6)
    assert torch.linalg.eigvalsh(covariance.double()).min() > 0
    model.eval()
    inputs = tiny_splits.test["input"][:8].float() / 255
    out = model.predictive(inputs)
    assert torch.allclose(out["log_probs"].exp().sum(1), torch.ones(8), atol=1e-5)
    # The probit predictive is less confident than the MAP softmax, never more.
    assert (out["log_probs"].max(1).values <= torch.log_softmax(out["logits"], 1).max(1).values + 1e-6).all()
    reloaded = OODNet(spec, TrainSpec(), (1, 28, 28), 10)
    reloaded.load_state_dict(model.state_dict())
    reloaded.eval()
    assert torch.allclose(reloaded.predictive(inputs)["log_probs"], out["log_probs"])


# --- ensembles, MC dropout, outlier exposure -----------------------------------------------------

def test_ensemble_predicts_by_its_members_mean_probability_and_members_start_apart():
    torch.manual_seed(0)
    model = OODNet(OODNetSpec(channels=[4], hidden=8, members=3), TrainSpec(), (1, 28, 28), 10).eval()
    inputs = torch.rand(6, 1, 28, 28)
    members = torch.stack([m(inputs) for m in model.members])
    out = model.predictive(inputs)
    assert torch.allclose(out["log_probs"].exp(), members.softmax(dim=2).mean(0), atol=1e-6)
    assert torch.allclose(out["own"], members.softmax(dim=2).mean(0).max(1).values, atol=1e-6)
    weights = [m.head.weight for m in model.members]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])


def test_mc_dropout_averages_seeded_stochastic_passes():
    torch.manual_seed(0)
    model = OODNet(OODNetSpec(channels=[4], hidden=16, dropout=0.5, mc_samples=8), TrainSpec(), (1, 28, 28), 10)
    model.eval()
    inputs = torch.rand(4, 1, 28, 28)
    first, second = model.predictive(inputs), model.predictive(inputs)
    assert torch.equal(first["log_probs"], second["log_probs"])  # the same masks every call
    deterministic = torch.log_softmax(model.members[0](inputs), dim=1)
    assert not torch.allclose(first["log_probs"], deterministic, atol=1e-4)
    assert not model.members[0].body[4].training  # dropout is off again afterwards
    model.train()
    model.predictive(inputs)
    assert model.members[0].body[4].training  # and on again where it was on


def test_an_ensemble_with_mc_dropout_averages_every_member_under_every_mask():
    torch.manual_seed(0)
    model = OODNet(OODNetSpec(channels=[4], hidden=16, members=2, dropout=0.5, mc_samples=4), TrainSpec(),
                   (1, 28, 28), 10).eval()
    inputs = torch.rand(4, 1, 28, 28)
    samples = model.mc_logits(inputs)
    assert samples.shape == (8, 4, 10)
    out = model.predictive(inputs)
    assert torch.allclose(out["log_probs"].exp(), samples.softmax(dim=2).mean(0), atol=1e-6)
    plain = torch.stack([m(inputs) for m in model.members]).softmax(dim=2).mean(0)
    assert not torch.allclose(out["log_probs"].exp(), plain, atol=1e-4)


def test_outlier_exposure_adds_the_energy_margins_to_every_member_s_loss():
    torch.manual_seed(0)
    exposure = {"m_in": -3.0, "m_out": -1.0, "weight": 0.5}
    model = OODNet(OODNetSpec(channels=[4], hidden=8, members=2, outlier_exposure=exposure), TrainSpec(),
                   (1, 28, 28), 10)
    model.log = lambda *args, **kwargs: None  # outside a Trainer
    batch = {"input": torch.randint(0, 255, (5, 1, 28, 28), dtype=torch.uint8), "label": torch.arange(5),
             "outlier": torch.randint(0, 255, (5, 2, 1, 28, 28), dtype=torch.uint8)}
    loss = model.training_step(batch, 0)
    inputs, outliers = batch["input"].float() / 255, batch["outlier"].flatten(0, 1).float() / 255
    expected = sum(F.cross_entropy(m(inputs), batch["label"])
                   + 0.5 * S.energy_margin_loss(S.energy(m(inputs)), S.energy(m(outliers)), -3.0, -1.0)
                   for m in model.members)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not model.training_step({k: v for k, v in batch.items() if k != "outlier"}, 0).item() == pytest.approx(
        loss.item())


# --- the datasets and the split between training and test outliers ---------------------------------

def test_outlier_exposure_and_test_families_are_disjoint_and_each_spec_keeps_to_its_own():
    assert not set(TEST_NAMES) & set(OUTLIER_NAMES)
    with pytest.raises(ValidationError):
        OutlierExposureSpec(families=["ood_digits"])
    with pytest.raises(ValidationError):
        OODDetectionSpec(families=["oe_smooth_noise"])
    assert OODNetSpec(outlier_exposure={}).datasets() == OUTLIER_NAMES
    # The test families come from the Fashion-MNIST test split or from nothing of Fashion-MNIST; the
    # outlier-exposure images the model trains on from its training split (or noise).
    assert ood_data.OUTLIERS["train"] > 0


def test_bilinear_resize_matches_torch_interpolate():
    images = np.random.default_rng(0).random((3, 8, 8))
    expected = F.interpolate(torch.from_numpy(images)[:, None], size=20, mode="bilinear", align_corners=False)
    assert np.allclose(ood_data.resize_bilinear(images, 20), expected[:, 0].numpy(), atol=1e-12)


def test_patch_shuffle_keeps_each_image_s_patches():
    images = np.arange(2 * 784, dtype=np.int64).reshape(2, 1, 28, 28) % 251
    shuffled = ood_data.shuffle_patches(images, np.random.default_rng(0))
    assert not np.array_equal(shuffled, images)

    def patches(x):
        return sorted(x[0, r:r + 7, c:c + 7].tobytes() for r in range(0, 28, 7) for c in range(0, 28, 7))

    assert all(patches(shuffled[i]) == patches(images[i]) for i in range(2))


@needs_fashion_mnist
def test_every_ood_dataset_generates_to_its_registered_sha256s_and_reads_back(tmp_path: Path):
    registered = plugins.datasets()
    for source in DATASETS:
        folder = fetch_dataset(registered[source.name], root=tmp_path)  # checks every file's sha256
        readout = source.load_reader()(folder)
        assert readout.test["input"].shape[1:] == source.input_shape and readout.test["input"].dtype == np.uint8
    digits = registered["ood_digits"].load_reader()(tmp_path / "ood_digits").test["input"]
    assert len(digits) == 1797 and digits[:, :, :4].max() == 0 and digits.max() > 200  # centred, bright strokes
    six = registered["fmnist_six"].load_reader()(tmp_path / "fmnist_six")
    assert set(np.unique(six.train["label"])) == set(range(6)) and len(six.classes) == 6
    four = registered["ood_fmnist_four"].load_reader()(tmp_path / "ood_fmnist_four").test["input"]
    assert len(four) + len(six.test["input"]) == 10_000
    for side, steps in ((14, 49), (24, 144)):
        sequences = registered[f"seq_fmnist_{side}"].load_reader()(tmp_path / f"seq_fmnist_{side}")
        assert sequences.test["input"].shape == (10_000, 4, steps)
    short = registered["seq_fmnist_14"].load_reader()(tmp_path / "seq_fmnist_14")
    long = registered["seq_fmnist_24"].load_reader()(tmp_path / "seq_fmnist_24")
    assert np.array_equal(short.test["label"], long.test["label"]) and len(short.train["input"]) == 60_000


# --- both tasks on other families' classifiers ------------------------------------------------------

@needs_fashion_mnist
@pytest.mark.parametrize("shipped", ["pc_mlp_fmnist_quick", "snn_conv_fmnist_quick"])
def test_calibration_and_ood_detection_run_on_another_family_s_classifier(shipped: str, tmp_path: Path):
    root = tmp_path / shipped
    (root / "specs").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    text = (ROOT / "specs" / f"{shipped}.yaml").read_text()
    text = text[:text.index("downstream:")] + (
        "downstream:\n  - {kind: calibration}\n"
        "  - {kind: ood_detection, families: [ood_digits, ood_uniform], max_examples: 300}\n")
    (root / "specs" / "quick.yaml").write_text(text)
    finish(pipeline(root, "-q", "run", "specs/quick.yaml"))
    evaluated = json.loads((root / "metrics" / shipped / "evaluate.json").read_text())
    calibration, detection = evaluated["calibration"], evaluated["ood_detection"]
    assert 0 <= calibration["ece"] <= 1 and calibration["nll"] > 0 and 0 <= calibration["brier"] <= 2
    assert calibration["temperature"] > 0 and calibration["nll_temperature"] <= calibration["nll"] + 0.05
    for family in ("ood_digits", "ood_uniform"):
        for score in ("msp", "max_logit", "energy"):
            assert 0 <= detection[f"{family}/{score}/auroc"] <= 1
    assert "ood_digits/own/auroc" not in detection  # a plain classifier has no score of its own
    pictures = {p.name for p in (root / "artifacts" / shipped / "evaluate").iterdir()}
    assert {"reliability.png", "ood_scores.png"} <= pictures


def test_the_report_puts_every_spec_s_calibration_detection_and_lengths_side_by_side():
    from pipeline.models.ood.report import sections

    def stats(value):
        return {"mean": value, "std": 0.01, "values": [value]}

    results = [
        {"spec": "a", "model": "ood_cnn", "runs": [{}, {}],
         "metrics": {"calibration": {"accuracy": stats(0.9), "ece": stats(0.02), "ece_temperature": stats(0.01),
                                     "nll": stats(0.3), "brier": stats(0.15)},
                     "ood_detection": {"ood_digits/msp/fpr95": stats(0.5), "ood_digits/energy/fpr95": stats(0.1),
                                       "mean/msp/fpr95": stats(0.5), "mean/energy/fpr95": stats(0.1),
                                       "mean/msp/auroc": stats(0.7), "mean/energy/auroc": stats(0.9)}}},
        {"spec": "r", "model": "rims", "runs": [{}],
         "metrics": {"length_generalization": {"accuracy_length_196": stats(0.8), "accuracy_length_576": stats(0.4)}}},
    ]
    found = {section.title: section.markdown for section in sections(results)}
    assert set(found) == {"Calibration", "OOD detection", "FPR95 on each family", "Length generalisation"}
    assert "| `a` | ood_cnn | 90.0 ± 1.0% | **2.0 ± 1.0%** | 1.0 ± 1.0% | 0.300 ± 0.010 | 0.150 ± 0.010 | 2 |" in (
        found["Calibration"])
    assert "| `a` | `ood_digits` | 50.0 ± 1.0% | 10.0 ± 1.0% | - | 70.0 ± 1.0% | 90.0 ± 1.0% | - | 2 |" in (
        found["OOD detection"])
    assert "| `r` | rims | 80.0 ± 1.0% | 40.0 ± 1.0% | 1 |" in found["Length generalisation"]
