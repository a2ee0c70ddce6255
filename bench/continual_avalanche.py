"""Continual learning against Avalanche: the same class-incremental Split Fashion-MNIST, the same
network, the same epochs and the same memory, with Avalanche's Naive, EWC, Replay and Cumulative
strategies and ours, in one run; final average accuracy, forgetting and wall time side by side.

    pip install -e '.[bench]'      # avalanche-lib 0.6
    python bench/continual_avalanche.py [--seeds 0 1 2] [--strategies naive ewc replay cumulative]
                                        [--epochs 5] [--train-subset N] [--threads 2] [--no-validating]

Ours: the pipeline's own training stage (`pipeline.stages.train.pretrain`) on the shipped spec
specs/continual_split_fmnist_<strategy>.yaml (where a strategy has none yet: the naive spec with
`model.strategy` replaced by that strategy's defaults), with `seed` set and
`model.validate_every_epoch: false`, in a temporary project root (its own artifacts and MLflow
store, data/ linked to this checkout's), so the real outputs stay as they are. Without per-epoch
validation, as Avalanche's loop below has none: each fit trains only, and the figures are measured
after each experience, as Avalanche's `eval` does. Its accuracy matrix is the trained model's
(`pipeline.upstream.finished(spec)`). Its wall time: the stage's `wall_time_s`: the Lightning fits
of every experience and each experience's `after_phase` (the strategy's consolidation: EWC's
Fisher, the replay buffer's update; and the scoring of every experience's test and validation
examples), whose share is also timed here. The stage's whole loop (Trainer set-up, checkpoints,
MLflow logging, the weights saved after each experience) is shown beside it; the whole call,
MLflow store included, is in the JSON as `stage_s`.

Ours validating: the same with the spec as shipped (`validate_every_epoch` null: each fit
validates at each epoch's end on that experience's validation examples, after Lightning's sanity
check), the way earlier runs of this bench timed ours, in a column of its own (`--no-validating`
leaves it out). Both give the same accuracy matrices and weights (the option only drops the
per-epoch curve): checked on every run, `same_matrices_as_validating` in the JSON.

Avalanche: the same examples (`load_splits` of the spec's data section, seeded as ours: the same
train/validation split and `train_subset`), turned into a benchmark by Avalanche's
`class_incremental_benchmark` with our seeded class order (`scenario.class_order(10, seed)`); inputs
uint8 / 255 as float32, no normalisation, held in memory. The same MLP (Flatten, Linear 784-400,
ReLU, Linear 400-400, ReLU, Linear 400-10) built after `torch.manual_seed(seed)` (the same initial
weights as ours: checked), Adam at the spec's lr and weight decay, train_mb_size = data.batch_size,
train_epochs = train.max_epochs, eval_mb_size 1024, num_workers 0, the last incomplete batch dropped
(as ours), the optimiser's state reset at each experience (ours builds a fresh optimiser per
experience; `--avalanche-keep-optimizer-state` keeps Avalanche's default). Strategies:
- naive: `Naive`;
- ewc: `EWC(mode="online", ewc_lambda=, decay_factor=)` with our spec's ewc_lambda and decay (see
  the caveat below on what each penalty is);
- replay: `Naive` + `ReplayPlugin(mem_size=<our memory in samples>, batch_size_mem=<our replay batch>)`
  (Avalanche's `Replay` strategy is exactly this, with batch_size_mem left to train_mb_size); its
  storage policy is Avalanche's default, experience-balanced (each experience here is two classes,
  so close to our class-balanced buffer);
- cumulative: `Cumulative`.
Its wall time: the loop of `strategy.train(experience)` then `strategy.eval(test_stream)` (Avalanche
scoring every experience's test set, quiet: an EvaluationPlugin without loggers) over the stream.
The accuracy matrix itself is computed outside that clock by the same code for both sides (argmax
over all ten classes on each experience's test examples); Avalanche's own figures are checked
against it.

Caveat, EWC: ours adds lambda/2 sum F (theta - theta*)^2 with F the running diagonal Fisher (decayed
by `decay`); Avalanche's EWCPlugin adds lambda sum F (theta - theta*)^2 (no 1/2) with F the mean over
minibatches of train_mb_size of the squared *minibatch* gradient (an empirical Fisher of batch means,
computed in eval mode on the whole experience), so the same lambda is not the same strength; the
same lambda is used, as the issue states it, and `--avalanche-ewc-lambda` overrides Avalanche's.

Each seed runs every side for each strategy (the order of the sides rotates), with the same torch
threads (`--threads`); ours runs quiet (no progress bar; Avalanche's evaluator has no logger either).
Prints the table (mean +- sample standard deviation over seeds) and the aims of the issue: naive
and EWC within 2 points of Avalanche's; replay at least Avalanche's at the same memory and at least
1.5x faster; and at least Avalanche's speed on every strategy (issue 30). Writes
results/bench/continual_avalanche.json with every per-seed figure, the versions, the machine and
the commit, and the table as printed beside it (.txt).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
STRATEGIES = ("naive", "ewc", "replay", "cumulative")
ISSUE = {"naive": 0.199, "ewc": 0.200, "replay": 0.795, "cumulative": 0.879}
"""Avalanche 0.6's final average accuracies as the issue measured them (MLP 2x400, 5 epochs)."""
SIDES = ("ours", "avalanche", "ours_validating")
"""Ours without per-epoch validation (the comparison), Avalanche, and ours as the spec is shipped."""
VERBOSITY = "PIPELINE_LOG_LEVEL"
WITHIN = 0.02
SPEEDUP = 1.5
EVAL_BATCH = 1024


# ---------------------------------------------------------------- specs


def load_spec(strategy: str, seed: int, args, validating: bool = False):
    """Our spec of `strategy` for `seed` (the shipped one, or the naive one with the strategy
    swapped in), with the bench's overrides: without per-epoch validation unless `validating`."""
    from pipeline.spec.load import load

    overrides = [f"seed={seed}", "seeds=[]", f"train.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}"]
    if not validating:
        overrides.append("model.validate_every_epoch=false")
    path = SPECS / f"continual_split_fmnist_{strategy}.yaml"
    if not path.is_file():
        path = SPECS / "continual_split_fmnist_naive.yaml"
        overrides += [f"name=continual_split_fmnist_{strategy}", f"model.strategy={{name: {strategy}}}"]
    if args.epochs is not None:
        overrides.append(f"train.max_epochs={args.epochs}")
    if args.train_subset is not None:
        overrides.append(f"data.train_subset={args.train_subset}")
    spec = load(path, overrides)
    if spec.model.kind != "continual" or spec.model.scenario.type != "class_incremental":
        raise SystemExit(f"{path}: the bench compares class-incremental continual specs")
    return spec, path


def replay_memory(strategy_spec) -> int:
    """Our replay buffer in examples (a budget in bytes: uint8 pixels plus a label byte each)."""
    memory = strategy_spec.memory
    return memory.samples if memory.samples is not None else memory.bytes // (28 * 28 + 1)


# ---------------------------------------------------------------- the accuracy matrix, both sides alike


@torch.no_grad()
def accuracies(forward, experiences, device: str) -> list[float]:
    """Accuracy on each experience's test examples: argmax over every class."""
    from pipeline.data.datamodule import model_input

    out = []
    for experience in experiences:
        inputs, labels = experience.test["input"], experience.test["label"]
        correct = 0
        for start in range(0, len(labels), EVAL_BATCH):
            logits = forward(model_input(inputs[start:start + EVAL_BATCH].to(device)))
            correct += (logits.argmax(dim=1).cpu() == labels[start:start + EVAL_BATCH]).sum().item()
        out.append(correct / len(labels) if len(labels) else float("nan"))
    return out


def figures(matrix: np.ndarray, initial: np.ndarray | None) -> dict:
    from pipeline.models.continual import metrics as cl_metrics

    summary = cl_metrics.summary(matrix, initial)
    return {"average_accuracy": summary["average_accuracy"], "forgetting": summary["forgetting"],
            "backward_transfer": summary["backward_transfer"], "matrix": np.asarray(matrix).tolist()}


# ---------------------------------------------------------------- ours


def run_ours(spec, experiences) -> dict:
    from pipeline.models.continual.module import Continual
    from pipeline.stages.train import pretrain
    from pipeline.upstream import finished

    # The stage's wall_time_s covers the fits and what each experience ends with (`after_phase`: the
    # strategy's consolidation, EWC's Fisher or the replay buffer, then the scoring of every
    # experience), as Avalanche's clock holds both; the after_phase share is timed here to show it.
    original, after_s = Continual.after_phase, []

    def timed(self, index, phase):
        started = time.perf_counter()
        try:
            return original(self, index, phase)
        finally:
            after_s.append(time.perf_counter() - started)

    Continual.after_phase = timed
    started = time.perf_counter()
    try:
        result = pretrain(spec)
    finally:
        Continual.after_phase = original
    stage_s = time.perf_counter() - started
    trained, initial = finished(spec).models()
    device = "cpu"
    trained.to(device)
    matrix = trained.matrix("test")
    matrix_val = trained.matrix("val")
    # The same scoring code as Avalanche's side, on our final weights: must give our last row.
    last_row = accuracies(lambda x: trained.classify(x), experiences, device)
    return {
        **figures(matrix, trained.initial_test.cpu().numpy()),
        "matrix_val": np.asarray(matrix_val).tolist(),
        "average_accuracy_val": float(np.mean(matrix_val[-1])),
        "wall_s": float(result["wall_time_s"]),
        "fits_s": round(float(result["wall_time_s"]) - sum(after_s), 2),
        "after_phase_s": round(sum(after_s), 2),
        "loop_s": float(result["wall_time_this_process_s"]),
        "stage_s": round(stage_s, 2),
        "steps": result["steps"],
        "last_row_check": float(np.max(np.abs(np.asarray(last_row) - matrix[-1]))),
        "initial_state": {k: v.clone() for k, v in initial.state_dict().items()
                          if k.startswith(("encoder.", "head."))},
    }


# ---------------------------------------------------------------- Avalanche


def mlp(in_features: int, hidden: list[int], num_classes: int) -> nn.Sequential:
    """Ours' network, module for module (so that a seed gives both the same initial weights)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


class Tensors(torch.utils.data.TensorDataset):
    """Inputs and labels in memory, with the `targets` Avalanche reads the classes from."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        super().__init__(inputs, labels)
        self.targets = labels


def avalanche_benchmark(splits, order: list[int], count: int):
    from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark

    def dataset(split: str) -> Tensors:
        inputs, labels = splits.pair(split)
        return Tensors(inputs.float().div_(255), labels)

    return class_incremental_benchmark({"train": dataset("train"), "test": dataset("test")},
                                       class_order=order, num_experiences=count)


def avalanche_strategy(name: str, spec, model: nn.Module, args):
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from avalanche.training.supervised import EWC, Cumulative, Naive

    optimiser_spec = spec.train.optimizer
    optimiser = torch.optim.Adam(model.parameters(), lr=optimiser_spec.lr, weight_decay=optimiser_spec.weight_decay)
    common = dict(model=model, optimizer=optimiser, criterion=nn.CrossEntropyLoss(),
                  train_mb_size=spec.data.batch_size, train_epochs=spec.train.max_epochs, eval_mb_size=EVAL_BATCH,
                  device=args.device, evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]))
    strategy = spec.model.strategy
    if name == "naive":
        return Naive(**common), {}
    if name == "ewc":
        ewc_lambda = strategy.ewc_lambda if args.avalanche_ewc_lambda is None else args.avalanche_ewc_lambda
        settings = {"ewc_lambda": ewc_lambda, "mode": "online", "decay_factor": strategy.decay}
        return EWC(**common, **settings), settings
    if name == "replay":
        settings = {"mem_size": replay_memory(strategy), "batch_size_mem": strategy.batch_size or spec.data.batch_size}
        plugin = ReplayPlugin(**settings)  # storage policy: Avalanche's default, experience-balanced
        return Naive(**common, plugins=[plugin]), {**settings, "storage_policy": type(plugin.storage_policy).__name__}
    if name == "cumulative":
        return Cumulative(**common), {}
    raise ValueError(name)


def avalanche_accuracies(metrics: dict, count: int) -> list[float]:
    """Avalanche's own per-experience test accuracies from `strategy.eval`'s last metrics."""
    found = {}
    for key, value in metrics.items():
        if key.startswith("Top1_Acc_Exp/eval_phase/test_stream"):
            found[int(key.rsplit("Exp", 1)[1])] = float(value)
    return [found.get(j, float("nan")) for j in range(count)]


def run_avalanche(name: str, spec, splits, experiences, args) -> dict:
    from pipeline.models.continual.scenario import class_order

    count = spec.model.scenario.experiences
    order = class_order(splits.num_classes, spec.seed, spec.model.scenario.class_order)
    benchmark = avalanche_benchmark(splits, order, count)
    for theirs, ours in zip(benchmark.train_stream, experiences, strict=True):  # the same experiences
        assert sorted(theirs.classes_in_this_experience) == sorted(ours.classes), (theirs, ours.classes)
        assert len(theirs.dataset) == len(ours.train["label"])
    for theirs, ours in zip(benchmark.test_stream, experiences, strict=True):
        assert len(theirs.dataset) == len(ours.test["label"])

    torch.manual_seed(spec.seed)  # ours: seed_everything(seed), then the network
    model = mlp(int(np.prod(splits.input_shape)), spec.model.hidden, splits.num_classes)
    initial_state = {k: v.clone() for k, v in model.state_dict().items()}
    strategy, settings = avalanche_strategy(name, spec, model, args)
    initial = accuracies(lambda x: model.eval()(x), experiences, args.device)
    options = {"drop_last": True, "num_workers": 0,
               "reset_optimizer_state": not args.avalanche_keep_optimizer_state}
    rows, own_rows, wall = [], [], 0.0
    for experience in benchmark.train_stream:
        started = time.perf_counter()
        strategy.train(experience, **options)
        metrics = strategy.eval(benchmark.test_stream)
        wall += time.perf_counter() - started
        rows.append(accuracies(lambda x: model.eval()(x), experiences, args.device))
        own_rows.append(avalanche_accuracies(metrics, count))
    matrix = np.array(rows)
    return {**figures(matrix, np.array(initial)), "wall_s": round(wall, 2), "settings": settings,
            "own_metrics_check": float(np.nanmax(np.abs(np.array(own_rows) - matrix))),
            "initial_state": initial_state}


def same_weights(ours: dict, theirs: dict, hidden: list[int]) -> bool:
    """Our encoder/head parameters against the Sequential's, in module order."""
    names = [f"encoder.layers.{2 * i}" for i in range(len(hidden))] + ["head"]
    mine = [ours[f"{n}.{p}"] for n in names for p in ("weight", "bias")]
    linear = sorted({int(k.split(".")[0]) for k in theirs}, key=int)
    other = [theirs[f"{i}.{p}"] for i in linear for p in ("weight", "bias")]
    return len(mine) == len(other) and all(a.shape == b.shape and torch.equal(a, b)
                                           for a, b in zip(mine, other, strict=True))


# ---------------------------------------------------------------- the machine's other load


def busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux's /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU seconds spent by everything but this process while a side ran: a side timed while
    something else ran is flagged (`other_cpu_s` in the JSON), since two torch threads on a 2-core
    machine slow down far more than in proportion when they share it."""

    def __enter__(self):
        self.busy, self.own = busy_cpu_s(), time.process_time()
        return self

    def __exit__(self, *exc):
        busy = busy_cpu_s()
        self.other_cpu_s = None if busy is None or self.busy is None else \
            round(max(0.0, busy - self.busy - (time.process_time() - self.own)), 1)


OTHER_LOAD_FLAG = 0.05
"""A side is flagged when other processes took more than this share of its wall time in CPU
(and more than half a second)."""


# ---------------------------------------------------------------- the table


def spread(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def pct(values: list[float]) -> str:
    mean, std = spread(values)
    return "n/a" if math.isnan(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}%"


def secs(values: list[float]) -> str:
    mean, std = spread(values)
    return "n/a" if math.isnan(mean) else f"{mean:.1f} ± {std:.1f} s"


def done(runs: dict, name: str, side: str) -> list[dict]:
    return [r for r in runs[name].get(side, []) if "error" not in r]


def paired(ours: list[dict], theirs: list[dict]) -> list[float]:
    """Avalanche's wall over ours, seed by seed (the seeds both sides ran)."""
    walls = {r["seed"]: r["wall_s"] for r in theirs}
    return [round(walls[r["seed"]] / r["wall_s"], 3) for r in ours if r["seed"] in walls and r["wall_s"]]


def summarise(runs: dict, strategies: list[str]) -> tuple[list[dict], list[str]]:
    rows, aims = [], []
    for name in strategies:
        ours, theirs, validating = (done(runs, name, side) for side in SIDES)
        acc_o, _ = spread([r["average_accuracy"] for r in ours])
        acc_a, _ = spread([r["average_accuracy"] for r in theirs])
        wall_o, _ = spread([r["wall_s"] for r in ours])
        wall_a, _ = spread([r["wall_s"] for r in theirs])
        loop_o, _ = spread([r["loop_s"] for r in ours])
        wall_v, _ = spread([r["wall_s"] for r in validating])
        row = {"strategy": name, "ours_accuracy": acc_o, "avalanche_accuracy": acc_a,
               "difference": acc_o - acc_a, "ours_wall_s": wall_o, "avalanche_wall_s": wall_a,
               "speedup": wall_a / wall_o if wall_o else float("nan"), "ours_loop_s": loop_o,
               "speedup_loop": wall_a / loop_o if loop_o else float("nan"),
               "ours_validating_wall_s": wall_v,
               "speedup_validating": wall_a / wall_v if wall_v else float("nan"),
               "same_matrices_as_validating": all(r.get("same_matrices_as_validating", True) for r in ours)
               if validating else None,
               "ours_forgetting": spread([r["forgetting"] for r in ours])[0],
               "avalanche_forgetting": spread([r["forgetting"] for r in theirs])[0]}
        # Each seed's ratio, its sides run back to back (the machine's speed drifts between seeds).
        row["speedup_per_seed"] = paired(ours, theirs)
        row["speedup_validating_per_seed"] = paired(validating, theirs)
        rows.append(row)
        have = not (math.isnan(acc_o) or math.isnan(acc_a))
        if name in ("naive", "ewc"):
            verdict = "n/a " if not have else "PASS" if abs(row["difference"]) <= WITHIN else "MISS"
            aims.append(f"{verdict} {name}: ours within {100 * WITHIN:.0f} points of Avalanche's "
                        f"({100 * row['difference']:+.1f} pt)")
        elif name == "replay":
            verdict = "n/a " if not have else "PASS" if row["difference"] >= 0 else "MISS"
            aims.append(f"{verdict} replay: ours at least Avalanche's accuracy at the same memory "
                        f"({100 * row['difference']:+.1f} pt)")
            verdict = "n/a " if not have else "PASS" if row["speedup"] >= SPEEDUP else "MISS"
            aims.append(f"{verdict} replay: ours at least {SPEEDUP}x faster ({row['speedup']:.2f}x; counting "
                        f"the stage's whole loop, {row['speedup_loop']:.2f}x)")
    for row in rows:
        have = not math.isnan(row["speedup"])
        verdict = "n/a " if not have else "PASS" if row["speedup"] >= 1.0 else "MISS"
        aims.append(f"{verdict} {row['strategy']}: ours at least Avalanche's speed ({row['speedup']:.2f}x)")
    return rows, aims


def table(runs: dict, rows: list[dict], aims: list[str], args, seeds: list[int]) -> str:
    """The table and the aims, as printed."""
    lines = [f"class-incremental Split Fashion-MNIST, 5 experiences; seeds {seeds}; torch threads {args.threads}; "
             f"device {args.device}; epochs per experience {args.epochs or 'the spec’s'}; train subset "
             f"{args.train_subset or 'all'}. Final average accuracy (mean of the last row), mean ± std over seeds. "
             "Ours: validate_every_epoch false (no per-epoch validation, as Avalanche's loop)"
             + ("; ours validating: the spec as shipped (per-epoch validation)." if args.validating else "."),
             "| strategy | ours | Avalanche | difference | Avalanche (issue) | forgetting ours / Avalanche "
             "| wall ours | wall Avalanche | speed-up | ours' whole stage loop | speed-up vs it "
             "| wall ours validating | speed-up vs it |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        name = row["strategy"]
        ours, theirs, validating = (done(runs, name, side) for side in SIDES)
        diff = "n/a" if math.isnan(row["difference"]) else f"{100 * row['difference']:+.1f} pt"
        forgetting = " / ".join("n/a" if math.isnan(v) else f"{100 * v:.1f}%"
                                for v in (row["ours_forgetting"], row["avalanche_forgetting"]))
        speed, speed_loop, speed_v = ("n/a" if math.isnan(v) else f"{v:.2f}x"
                                      for v in (row["speedup"], row["speedup_loop"], row["speedup_validating"]))
        lines.append(f"| {name} | {pct([r['average_accuracy'] for r in ours])} "
                     f"| {pct([r['average_accuracy'] for r in theirs])} | {diff} | {100 * ISSUE[name]:.1f}% "
                     f"| {forgetting} | {secs([r['wall_s'] for r in ours])} | {secs([r['wall_s'] for r in theirs])} "
                     f"| {speed} | {secs([r['loop_s'] for r in ours])} | {speed_loop} "
                     f"| {secs([r['wall_s'] for r in validating])} | {speed_v} |")
    for name in runs:
        for side in SIDES:
            for r in runs[name].get(side, []):
                if "error" in r:
                    lines.append(f"  {side} {name} seed {r['seed']}: failed: {r['error']}")
    lines.append("\nSpeed-up seed by seed (each seed's sides run back to back): " + "; ".join(
        f"{row['strategy']} {', '.join(f'{v:.2f}x' for v in row['speedup_per_seed'])}"
        + (f" (validating {', '.join(f'{v:.2f}x' for v in row['speedup_validating_per_seed'])})"
           if row["speedup_validating_per_seed"] else "") for row in rows) + ".")
    loaded = [f"{side} {name} seed {r['seed']} ({r['other_cpu_s']:.1f} CPU-s in {r['wall_s']:.1f} s)"
              for name in runs for side in SIDES for r in runs[name].get(side, [])
              if "error" not in r and (r.get("other_cpu_s") or 0) > max(OTHER_LOAD_FLAG * r["wall_s"], 0.5)]
    lines.append("\nOther processes' CPU time while a side ran: "
                 + (f"more than {100 * OTHER_LOAD_FLAG:.0f}% of its wall time for {'; '.join(loaded)}: those "
                    "timings are slowed by the sharing" if loaded else
                    f"under {100 * OTHER_LOAD_FLAG:.0f}% of the wall time on every run (the machine was quiet)") + ".")
    if args.validating:
        same = [row["strategy"] for row in rows if row["same_matrices_as_validating"]]
        differ = [row["strategy"] for row in rows if row["same_matrices_as_validating"] is False]
        lines.append(f"\nOurs with and without per-epoch validation: the same accuracy matrices (test and "
                     f"validation) on every seed for {', '.join(same) or 'none'}"
                     + (f"; NOT for {', '.join(differ)}" if differ else "") + ".")
    lines += ["", "Aims (issue):", *(f"  {line}" for line in aims)]
    lines.append("Wall: ours = the stage's wall_time_s (the fits, without per-epoch validation, and each "
                 "experience's after_phase: the strategy's consolidation, the scoring of every experience's test "
                 "and validation examples); Avalanche = train + eval of the test stream per experience. Ours' whole "
                 "stage loop adds the Trainer set-up, checkpoints, MLflow logging and the weights saved per "
                 "experience. Ours validating: wall_time_s with per-epoch validation (the spec as shipped), as "
                 "earlier runs of this bench measured ours.")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--epochs", type=int, default=None, help="Epochs per experience; default: the spec's (5).")
    parser.add_argument("--train-subset", type=int, default=None,
                        help="Keep this many training examples (a quick try); default: all.")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads, both sides.")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="Both sides.")
    parser.add_argument("--avalanche-ewc-lambda", type=float, default=None,
                        help="Avalanche's ewc_lambda; default: our spec's (their penalty has no 1/2: see above).")
    parser.add_argument("--avalanche-keep-optimizer-state", action="store_true",
                        help="Keep Adam's state across experiences on Avalanche's side (its default); "
                             "default here: reset it, as ours starts each experience with a fresh optimiser.")
    parser.add_argument("--validating", action=argparse.BooleanOptionalAction, default=True,
                        help="Also run ours with per-epoch validation (the spec as shipped), a column of its own; "
                             "default: yes.")
    parser.add_argument("--progress-bar", action="store_true",
                        help="Show ours' progress bar and notes; default: ours runs quiet, as Avalanche's evaluator "
                             "without loggers.")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "continual_avalanche.json"))
    args = parser.parse_args()
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU visible")
    seeds = list(dict.fromkeys(args.seeds))
    torch.set_num_threads(args.threads)

    try:
        import avalanche
    except ModuleNotFoundError:
        raise SystemExit("Avalanche is not installed: pip install -e '.[bench]'") from None
    # Avalanche's notices on every strategy: the quiet evaluator is meant; `update` is its own call.
    warnings.filterwarnings("ignore", message="No loggers specified")
    warnings.filterwarnings("ignore", message="Call to deprecated function update")

    from pipeline.data.datamodule import load_splits
    from pipeline.models.continual import scenario as cl_scenario
    from pipeline.provenance import git_state, machine

    commit, dirty = git_state(ROOT)
    sides_run = [side for side in SIDES if side != "ours_validating" or args.validating]
    runs = {name: {side: [] for side in sides_run} for name in args.strategies}
    specs_used = {}
    real_data = ROOT / "data"
    with tempfile.TemporaryDirectory(prefix="continual_avalanche_") as scratch:
        # Our stage writes its artifacts and MLflow store under a project root of its own.
        (Path(scratch) / "data").symlink_to(real_data, target_is_directory=True)
        os.environ["PIPELINE_ROOT"] = scratch
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if not args.progress_bar:
            os.environ[VERBOSITY] = "warning"  # `pipeline -q`: no progress bar
        turn = 0
        for seed in seeds:
            for name in args.strategies:
                spec, path = load_spec(name, seed, args)
                specs_used[name] = {"path": str(path.relative_to(ROOT)), "shipped": path.stem.endswith(name),
                                    "strategy": spec.model.strategy.model_dump(mode="json"),
                                    "ours_overrides": {"model.validate_every_epoch": False}}
                splits = load_splits(spec.data, seed, root=real_data)
                experiences = cl_scenario.build(spec.model.scenario, splits, seed)
                sides = sides_run[turn % len(sides_run):] + sides_run[:turn % len(sides_run)]  # rotated
                turn += 1
                done = {}
                for side in sides:
                    print(f"seed {seed} {name} {side} ...", flush=True)
                    try:
                        torch.set_num_threads(args.threads)  # whatever the other side left
                        with OtherLoad() as load:
                            if side == "ours":
                                done[side] = run_ours(spec, experiences)
                            elif side == "ours_validating":
                                done[side] = run_ours(load_spec(name, seed, args, validating=True)[0], experiences)
                            else:
                                # Lightning leaves deterministic algorithms on (the spec's `deterministic`):
                                # Avalanche runs with torch's default whichever side went first.
                                torch.use_deterministic_algorithms(False)
                                done[side] = run_avalanche(name, spec, splits, experiences, args)
                        done[side]["other_cpu_s"] = load.other_cpu_s
                    except Exception as err:  # one side failing (a strategy not written yet) keeps the other
                        traceback.print_exc(file=sys.stderr)
                        done[side] = {"error": f"{type(err).__name__}: {err}"}
                    done[side]["seed"] = seed
                    if "error" not in done[side]:
                        r = done[side]
                        print(f"seed {seed} {name} {side}: average accuracy {100 * r['average_accuracy']:.2f}%, "
                              f"forgetting {100 * r['forgetting']:.2f}%, wall {r['wall_s']:.1f} s", flush=True)
                if all("error" not in done[s] for s in ("ours", "avalanche")):
                    same = same_weights(done["ours"]["initial_state"], done["avalanche"]["initial_state"],
                                        spec.model.hidden)
                    done["ours"]["same_initial_weights"] = done["avalanche"]["same_initial_weights"] = same
                    if not same:
                        print(f"  warning: seed {seed} {name}: the two networks did not start from the same weights")
                if "ours_validating" in done and all("error" not in done[s] for s in ("ours", "ours_validating")):
                    # The option drops the per-epoch curve only: the same figures with and without it.
                    same = all(done["ours"][key] == done["ours_validating"][key] for key in ("matrix", "matrix_val"))
                    done["ours"]["same_matrices_as_validating"] = same
                    if not same:
                        print(f"  warning: seed {seed} {name}: ours gave other accuracy matrices without per-epoch "
                              "validation")
                for side in sides:
                    done[side].pop("initial_state", None)
                    runs[name][side].append(done[side])
        os.environ.pop("PIPELINE_ROOT", None)

    rows, aims = summarise(runs, args.strategies)
    text = table(runs, rows, aims, args, seeds)
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "settings": {**vars(args), "seeds": seeds},
        "specs": specs_used,
        "issue_avalanche": {k: ISSUE[k] for k in args.strategies},
        "rows": rows,
        "aims": aims,
        "runs": runs,
        "versions": {"torch": torch.__version__, "avalanche": getattr(avalanche, "__version__", "unknown")},
        "machine": machine(),
        "git_commit": commit,
        "git_dirty": dirty,
    }
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    out.with_suffix(".txt").write_text(f"{text}\n(commit {commit}{', working tree dirty' if dirty else ''}; "
                                       f"{json.dumps(machine())})\n")
    print(f"wrote {out} and {out.with_suffix('.txt')}")


if __name__ == "__main__":
    main()
