"""Our deep ensemble, MC dropout and last-layer Laplace against torch-uncertainty's, on the same
trained networks and the same data, each side scored by its own metrics and by ours.

    python bench/ood_uncertainty.py [--seeds 0 1 2] [--root .] [--threads 2]

The networks: the trained weights of specs/ood_ensemble_fmnist.yaml (5 members), ood_mc_dropout_fmnist
(dropout 0.25, 20 passes) and ood_laplace_fmnist, seed by seed, from `<root>/artifacts/<spec>[-seed<N>]
/pretrain/model.pt` (run `pipeline run specs/<spec>.yaml --seeds 0,1,2` first). Training is not what is
compared: both sides wrap the same weights, so a difference is one of method or metric code.

- ensemble: ours, `OODNet.predictive` (the members' mean probability); theirs,
  `torch_uncertainty.models.deep_ensembles` over the same five members (`reset_model_parameters=False`),
  its logits [M * B, C] averaged as probabilities as its classification routine does;
- MC dropout: ours, 20 passes with seeded masks; theirs, `torch_uncertainty.models.mc_dropout(net, 20)`
  (the batch repeated, dropout on in eval mode), probabilities averaged;
- Laplace: ours, laplace-torch's last-layer posterior (full GGN, prior precision by marginal likelihood,
  one scalar), probit predictive from the covariance we keep; theirs,
  `torch_uncertainty.post_processing.LaplaceApprox` with its defaults (last layer, glm predictive with
  the probit link, prior precision by marginal likelihood) but the full GGN Hessian, as ours (its
  default is Kronecker-factored), fitted on the same training split (the spec's seeded split).

The data: Fashion-MNIST's test split (in distribution) and the five far-OOD families of the
`ood_detection` task's default, each the test split of its registered dataset.

Metrics, on each side's predictive probabilities: accuracy, ECE (15 bins) and NLL; for OOD detection
the max predictive probability as the score. Ours: `scores.reliability`, `scores.detection` (AUROC,
in distribution the positive class; FPR95 = share of OOD images kept at 95% of in-distribution ones,
Liu et al.'s convention). Theirs: torch-uncertainty's `CalibrationError(task="multiclass", n_bins=15)`,
`CategoricalNLL`, torchmetrics' `BinaryAUROC` and its `FPR95(pos_label=1)` with OOD as the positive
class and -max probability as the score, as its classification routine calls them: its FPR95 is the
share of in-distribution images flagged at 95% of OOD images caught, another quantity than Liu et
al.'s; the table gives both, each computed by both codes where they mean the same.

Writes results/bench/ood_uncertainty.{json,txt} with the commit and the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SPECS = {"ensemble": "ood_ensemble_fmnist", "mc_dropout": "ood_mc_dropout_fmnist", "laplace": "ood_laplace_fmnist"}
FAMILIES = ("ood_digits", "ood_fmnist_inverted", "ood_fmnist_permuted", "ood_gaussian", "ood_uniform")
BATCH = 500


def trained(method: str, seed: int, root: Path):
    """The trained OODNet of a method's spec at a seed, and its spec."""
    from pipeline.errors import PipelineError
    from pipeline.models.ood.module import OODNet
    from pipeline.spec.components import TrainSpec
    from pipeline.spec.load import load

    name = SPECS[method]
    spec = load(ROOT / "specs" / f"{name}.yaml", [f"seed={seed}", "seeds=[]"])
    folder = root / "artifacts" / (name if seed == load(ROOT / "specs" / f"{name}.yaml").seed else f"{name}-seed{seed}")
    path = folder / "pretrain" / "model.pt"
    if not path.is_file():
        raise PipelineError(f"{path} is missing: run `pipeline run specs/{name}.yaml --seeds 0,1,2` in {root} first")
    model = OODNet(spec.model, TrainSpec(), (1, 28, 28), 10)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), spec


def network(member) -> nn.Module:
    return nn.Sequential(member.body, member.head)


@torch.no_grad()
def probabilities(forward, inputs: torch.Tensor) -> torch.Tensor:
    """forward(x in [0, 1]) -> probabilities [B, C], over the inputs (uint8) in batches."""
    return torch.cat([forward(inputs[i:i + BATCH].float() / 255) for i in range(0, len(inputs), BATCH)]).double()


def ours(model):
    return lambda x: model.predictive(x)["log_probs"].exp()


def theirs(method: str, model, splits):
    from torch_uncertainty.methods import deep_ensembles, mc_dropout
    from torch_uncertainty.post_processing import LaplaceApprox

    if method == "ensemble":
        wrapped = deep_ensembles([copy.deepcopy(network(m)) for m in model.members],
                                 reset_model_parameters=False).eval()
        estimators = len(model.members)
    elif method == "mc_dropout":
        # A copy: its eval() leaves the dropout modules on, and ours are the same modules.
        wrapped = mc_dropout(copy.deepcopy(network(model.members[0])), num_estimators=model.spec.mc_samples).eval()
        estimators = model.spec.mc_samples
    else:
        from torch.utils.data import DataLoader, TensorDataset

        # Its defaults but for the Hessian: the full GGN, as ours (its default is Kronecker-factored).
        laplace = LaplaceApprox("classification", network(model.members[0]), hessian_struct="full")
        inputs, labels = splits.train["input"].float() / 255, splits.train["label"]
        laplace.fit(DataLoader(TensorDataset(inputs, labels), batch_size=BATCH))
        return lambda x: laplace(x)

    def forward(x):
        logits = wrapped(x)  # [estimators * B, C], estimator-major
        return logits.softmax(-1).reshape(estimators, len(x), -1).mean(0)

    return forward


def our_metrics(probs: torch.Tensor, labels: torch.Tensor, ood: dict[str, torch.Tensor]) -> dict[str, float]:
    from pipeline.models.ood import scores as S

    out = {"accuracy": (probs.argmax(1) == labels).double().mean().item(),
           "ece": S.reliability(probs, labels, 15).ece, "nll": S.nll(probs.clamp_min(1e-12).log(), labels)}
    inside = probs.max(1).values.numpy()
    detected = [S.detection(inside, p.max(1).values.numpy()) for p in ood.values()]
    out["auroc"] = float(np.mean([d["auroc"] for d in detected]))
    out["fpr95_in"] = float(np.mean([d["fpr95"] for d in detected]))
    return out


def their_metrics(probs: torch.Tensor, labels: torch.Tensor, ood: dict[str, torch.Tensor]) -> dict[str, float]:
    from torch_uncertainty.metrics import FPR95, CalibrationError, CategoricalNLL
    from torchmetrics.classification import BinaryAUROC

    ece = CalibrationError(task="multiclass", num_classes=probs.shape[1], num_bins=15)
    ece.update(probs.float(), labels)
    nll = CategoricalNLL()
    nll.update(probs.clamp_min(1e-12).float(), labels)  # as ours: a float32 zero would make it infinite
    aurocs, fprs_out, fprs_in = [], [], []
    for p in ood.values():
        # Higher = OOD, as its msp criterion; 1 - max prob (not -max prob) keeps it in [0, 1], which
        # BinaryAUROC would otherwise squash through a float32 sigmoid into ties.
        score = 1 - torch.cat([probs.max(1).values, p.max(1).values]).float()
        target = torch.cat([torch.zeros(len(probs)), torch.ones(len(p))]).long()
        auroc = BinaryAUROC()
        auroc.update(score, target)
        aurocs.append(auroc.compute().item())
        fpr = FPR95(pos_label=1)
        fpr.update(score, target)
        fprs_out.append(fpr.compute().item())
        fpr_in = FPR95(pos_label=0)  # the same code with in-distribution as the positive class: Liu et al.'s
        fpr_in.update(1 - score, target)
        fprs_in.append(fpr_in.compute().item())
    return {"accuracy": (probs.argmax(1) == labels).double().mean().item(), "ece": ece.compute().item(),
            "nll": nll.compute().item(), "auroc": float(np.mean(aurocs)), "fpr95_in": float(np.mean(fprs_in)),
            "fpr95_out": float(np.mean(fprs_out))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=ROOT, help="the project whose artifacts/ hold the trained models")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from pipeline import plugins
    from pipeline.data.datamodule import load_splits
    from pipeline.data.fetch import fetch_dataset
    from pipeline.provenance import git_state, machine

    registered = plugins.datasets()
    readouts = {name: registered[name].load_reader()(fetch_dataset(registered[name])) for name in FAMILIES}
    ood = {name: torch.from_numpy(np.asarray(readout.test["input"])) for name, readout in readouts.items()}
    runs: dict[str, dict[str, list[dict]]] = {m: {"ours": [], "theirs": [], "their_code_on_our_probs": []}
                                              for m in SPECS}
    started = time.perf_counter()
    for method in SPECS:
        for seed in args.seeds:
            model, spec = trained(method, seed, args.root)
            splits = load_splits(spec.data, seed)
            inputs, labels = splits.pair("test")
            for side, forward in (("ours", ours(model)), ("theirs", theirs(method, model, splits))):
                torch.manual_seed(seed)
                probs = probabilities(forward, inputs)
                ood_probs = {name: probabilities(forward, images) for name, images in ood.items()}
                metrics = (our_metrics if side == "ours" else their_metrics)(probs, labels, ood_probs)
                runs[method][side].append(metrics)
                if side == "ours":  # their metric code on our predictions: do the two codes agree?
                    runs[method]["their_code_on_our_probs"].append(their_metrics(probs, labels, ood_probs))
                print(method, seed, side, {k: round(v, 4) for k, v in metrics.items()}, flush=True)
    commit, dirty = git_state(ROOT)

    def cell(values: list[float], percent: bool = True) -> str:
        scale = 100 if percent else 1
        mean = statistics.fmean(values) * scale
        std = (statistics.stdev(values) * scale) if len(values) > 1 else 0.0
        return f"{mean:.2f} ± {std:.2f}" if percent else f"{mean:.4f} ± {std:.4f}"

    columns = (("accuracy", True), ("ece", True), ("nll", False), ("auroc", True), ("fpr95_in", True))
    lines = [f"torch-uncertainty against ours on the same trained networks: Fashion-MNIST test split, 5 far-OOD "
             f"families (mean), seeds {args.seeds}; commit {commit[:12]} (dirty: {dirty}); {machine()['cpu']}, "
             f"{args.threads} threads; {time.perf_counter() - started:.0f} s", "",
             "| method | side | accuracy % | ECE % (15 bins) | NLL | AUROC % (max prob) | FPR95 % (Liu: OOD kept "
             "at 95% in) | FPR95 % (torch-uncertainty's: in flagged at 95% OOD) |", "|---|---|---|---|---|---|---|---|"]
    for method in SPECS:
        for side, label in (("ours", "ours (our metrics)"), ("their_code_on_our_probs", "ours (its metrics)"),
                            ("theirs", "torch-uncertainty (its metrics)")):
            rows = runs[method][side]
            cells = [cell([r[key] for r in rows], percent) for key, percent in columns]
            out = cell([r["fpr95_out"] for r in rows]) if "fpr95_out" in rows[0] else "-"
            lines.append(f"| {method} | {label} | " + " | ".join(cells) + f" | {out} |")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "results" / "bench" / "ood_uncertainty.json"
    out.write_text(json.dumps({"settings": {**vars(args), "root": str(args.root)}, "runs": runs, "git_commit": commit,
                               "git_dirty": dirty, "machine": machine(), "load_average": os.getloadavg(),
                               "command": f"python bench/ood_uncertainty.py --seeds {' '.join(map(str, args.seeds))} "
                                          f"--root {args.root} --threads {args.threads}"}, indent=2) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
