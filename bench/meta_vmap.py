"""MAML on torch.func: one vmap over a meta-batch's tasks against a per-task loop of the same
functions and against per-task module cloning (the way learn2learn's `clone` works), in time per
meta-step; and the peak memory of MAML against iMAML's as the inner steps grow.

    python bench/meta_vmap.py [--steps 1 5] [--meta-batch 16] [--repeats 5] [--iterations 3] [--threads 2]
    python bench/meta_vmap.py --quick    # smoke run: 1 inner step, 2 repeats of 1, memory at 1 and 5 steps

Time. The headline task: second-order MAML, Conv-4 (4 x [Conv3x3 32 channels, BatchNorm without
running statistics, ReLU, MaxPool 2]) on 1x28x28 inputs with a linear 5-way head, 5-way 1-shot
episodes with 15 queries per class, inner lr 0.4, random inputs (the arithmetic does not depend on
them). One meta-step is zero_grad, the inner loop on each task's support set, the query losses and
the backward of their mean into the weights. Peers, all from the same weights and data, with the
same torch threads:
- vmap: `adapted_losses(..., vectorise=True)` with `loss_of(net)`: one torch.func.vmap over the
  tasks, the norms computed from plain ops (`CompositeNorms`, needed for a right second-order
  gradient under vmap);
- loop: the same functions with `vectorise=False`, a Python loop over the tasks, with the fused
  batch-norm kernel (`composite_norms=False`; outside vmap it is right, and faster: its best);
- clone: per task, a deep copy of the module whose parameters are replaced by differentiable clones
  of the originals, then the inner loop by torch.autograd.grad(create_graph=True), the adapted
  weights written back into the copy's `_parameters` (learn2learn's clone_module/update_module);
- vmap, fused norms (for information): vmap with the fused kernels: the price of the composite
  norms; its second-order gradient is wrong (see pipeline/models/meta/algorithms.py), its column
  of gradient agreement shows by how much.
Each peer gets `--warmup` meta-steps, then `--repeats` rounds (the order rotating) of
`--iterations` meta-steps; the table gives the median over rounds of ms per meta-step. Before
timing, each peer's meta-gradient is compared with the loop's (max |difference| / max |loop's|).
Unless --no-extra, the same for three smaller problems where per-op overhead, not arithmetic,
dominates: Conv-4 with 1 query per class; the 1-D Conv-4 of the MNIST-1D few-shot specs on 1x40
signals with 15 queries per class; and the sine-regression MLP of the MAML paper (1-40-40-1, ReLU,
10 points per task, meta-batch 25, inner lr 0.01).

Memory. The peak resident memory of one meta-step, meta-batch `--memory-meta-batch` of the headline
task, against the inner steps: MAML (second order), FOMAML and iMAML (lam 1, `--cg-steps`), all
vmapped. Each measurement in a fresh interpreter: model and data built, one warm-up meta-step of
the same algorithm with 1 inner step (kernels, their caches, thread pools), the allocator's free
pages handed back to the OS (glibc malloc_trim), the resident set noted, the kernel's high-water
mark reset (Linux: /proc/self/clear_refs; elsewhere the peak since the start: an overestimate), one
meta-step, then the high-water mark minus the resident set before it: what the step added at its
peak, as the OS sees it. The probes run with MALLOC_MMAP_THRESHOLD_=65536: glibc then serves every
block over 64 KiB by mmap and unmaps it when freed, so that the resident set follows the live
tensors (with its default, adaptive threshold, freed blocks stay resident and repeated
measurements scatter by +-50 MiB; with it they repeat to the MiB).

Writes results/bench/meta_vmap.{json,txt} (--quick: meta_vmap_quick.{json,txt}) with the commit, the
machine, its load averages before and after, and the command.

Findings (results/bench/meta_vmap.txt, the full run at commit 12652af: 2-core AMD EPYC, 2 threads).
The aim, vmap >= 3x faster than the loop at meta-batch 16, is met where a task's work is small and
missed on the 28x28 Conv-4 with 15 queries a class:
- 1-D Conv-4 on MNIST-1D signals (the few-shot specs' network), 15 queries: 2.5x at 1 inner step,
  3.6x at 5 (vmap 180 ms, loop 648 ms per meta-step);
- sine MLP: 10.8x at 1 step, 11.5x at 5;
- Conv-4 on 28x28 images, 1 query a class: 1.8x, 1.7x;
- Conv-4 on 28x28 images, 15 queries a class: 0.49x at 1 step, 0.73x at 5 (vmap 1.2 s, the loop
  0.59 s). Not per-op overhead: vmapped, the query pass carries 16 x 75 = 1200 images, one
  32x28x28 activation of the first block is 120 MB (7.5 MB per task in the loop, which stays in
  cache), and once the weights are per task the convolutions run as grouped ones with extra
  permute and copy passes (profile: mul, add, copy and fill ~27% of vmap's time, ~7% of the
  loop's). vmap(..., chunk_size=4) reached the loop's time, no better; 1 thread gives the same
  ratio. So the rotated Fashion-MNIST specs set `vectorise: false`.
Cloning is the loop within noise. The composite norms cost vmap 5-15% over the fused kernels, whose
second-order gradient is wrong under vmap (1e-2 of its largest entry at 1 inner step). At 5 inner
steps on the 28x28 Conv-4, even the composite norms' vmapped gradient differs from the loop's by
1e-2 to 4e-2 of its largest entry (float32 through five second-order steps of lr 0.4; on the 1-D
Conv-4 the two agree to 7e-6). Memory (meta-batch 4, extra peak per meta-step): MAML 163, 247, 352
and 563 MiB at 1, 5, 10 and 20 inner steps; iMAML 220-221 MiB at every step count; FOMAML 144-145.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.models.meta.algorithms import (  # noqa: E402
    adapted_losses,
    imaml_hypergradient,
    loss_of,
    named_params,
)


def conv4(channels: int = 32, ways: int = 5) -> nn.Module:
    layers: list[nn.Module] = []
    for block in range(4):
        layers += [nn.Conv2d(1 if block == 0 else channels, channels, 3, padding=1),
                   nn.BatchNorm2d(channels, track_running_stats=False), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels, ways))  # 28 -> 14 -> 7 -> 3 -> 1


def conv4_1d(channels: int = 32, ways: int = 5) -> nn.Module:
    """The 1-D Conv-4 of the MNIST-1D few-shot specs (40 samples: 40 -> 20 -> 10 -> 5 -> 2)."""
    layers: list[nn.Module] = []
    for block in range(4):
        layers += [nn.Conv1d(1 if block == 0 else channels, channels, 3, padding=1),
                   nn.BatchNorm1d(channels, track_running_stats=False), nn.ReLU(), nn.MaxPool1d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(2 * channels, ways))


def sine_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(outputs.squeeze(-1), targets)


@dataclass
class Problem:
    name: str
    module: Callable[[], nn.Module]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batch: Callable[[int], tuple[torch.Tensor, ...]]  # meta-batch -> support_x, support_y, query_x, query_y
    meta_batch: int
    lr: float


def episodes(meta_batch: int, ways: int = 5, shots: int = 1, queries: int = 15,
             shape: tuple[int, ...] = (1, 28, 28)) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    support_y = torch.arange(ways).repeat_interleave(shots).repeat(meta_batch, 1)
    query_y = torch.arange(ways).repeat_interleave(queries).repeat(meta_batch, 1)
    return (torch.randn(meta_batch, ways * shots, *shape, generator=generator), support_y,
            torch.randn(meta_batch, ways * queries, *shape, generator=generator), query_y)


def sines(meta_batch: int, points: int = 10) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    amplitude = torch.rand(meta_batch, 1, generator=generator) * 4.9 + 0.1
    phase = torch.rand(meta_batch, 1, generator=generator) * torch.pi
    x = torch.rand(meta_batch, 2 * points, generator=generator) * 10 - 5
    y = amplitude * torch.sin(x - phase)
    return x[:, :points, None], y[:, :points], x[:, points:, None], y[:, points:]


def problems(args: argparse.Namespace) -> list[Problem]:
    headline = Problem(f"Conv-4, 5-way 1-shot, {args.queries} queries/class", conv4, F.cross_entropy,
                       lambda t: episodes(t, queries=args.queries), args.meta_batch, 0.4)
    if args.no_extra:
        return [headline]
    return [headline,
            Problem("Conv-4, 5-way 1-shot, 1 query/class", conv4, F.cross_entropy, lambda t: episodes(t, queries=1),
                    args.meta_batch, 0.4),
            Problem(f"1-D Conv-4 on MNIST-1D signals (1x40), 5-way 1-shot, {args.queries} queries/class", conv4_1d,
                    F.cross_entropy, lambda t: episodes(t, queries=args.queries, shape=(1, 40)), args.meta_batch, 0.4),
            Problem("sine MLP 1-40-40-1, 10 points", sine_mlp, squared_error, sines, 25, 0.01)]


def _assign(module: nn.Module, values: dict[str, torch.Tensor]) -> None:
    """Writes tensors (non-leaf ones too) over a module's parameters, as learn2learn's update_module."""
    for name, value in values.items():
        owner, _, attr = name.rpartition(".")
        module.get_submodule(owner)._parameters[attr] = value


def _parameter(module: nn.Module, name: str) -> torch.Tensor:
    owner, _, attr = name.rpartition(".")
    return module.get_submodule(owner)._parameters[attr]


def clone_meta_step(module: nn.Module, loss, batch, steps: int, lr: float) -> None:
    support_x, support_y, query_x, query_y = batch
    names = [name for name, _ in module.named_parameters()]
    total = 0.0
    for t in range(len(support_x)):
        learner = copy.deepcopy(module)
        _assign(learner, {name: param.clone() for name, param in module.named_parameters()})
        for _ in range(steps):
            current = [_parameter(learner, name) for name in names]
            grads = torch.autograd.grad(loss(learner(support_x[t]), support_y[t]), current, create_graph=True)
            _assign(learner, {name: p - lr * g for name, p, g in zip(names, current, grads, strict=True)})
        total = total + loss(learner(query_x[t]), query_y[t])
    (total / len(support_x)).backward()


PEERS = ("vmap", "loop", "clone", "vmap, fused norms")


def meta_step(peer: str, module: nn.Module, loss, batch, steps: int, lr: float) -> None:
    module.zero_grad(set_to_none=True)
    if peer == "clone":
        clone_meta_step(module, loss, batch, steps, lr)
        return
    loss_fn = loss_of(module, loss, composite_norms=peer == "vmap")
    adapted_losses(loss_fn, named_params(module), *batch, steps=steps, lr=lr,
                   vectorise=peer != "loop").mean().backward()


def time_problem(problem: Problem, steps: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    module = problem.module()
    batch = problem.batch(problem.meta_batch)
    grads = {}
    for peer in PEERS:
        meta_step(peer, module, problem.loss, batch, steps, problem.lr)
        grads[peer] = torch.cat([p.grad.flatten() for p in module.parameters()])
    agreement = {peer: ((grads[peer] - grads["loop"]).abs().max() / grads["loop"].abs().max()).item()
                 for peer in PEERS}
    for peer in PEERS:
        for _ in range(args.warmup):
            meta_step(peer, module, problem.loss, batch, steps, problem.lr)
    rounds: dict[str, list[float]] = {peer: [] for peer in PEERS}
    for repeat in range(args.repeats):
        for peer in PEERS[repeat % len(PEERS):] + PEERS[:repeat % len(PEERS)]:
            started = time.perf_counter()
            for _ in range(args.iterations):
                meta_step(peer, module, problem.loss, batch, steps, problem.lr)
            rounds[peer].append(1000 * (time.perf_counter() - started) / args.iterations)
        print(f"{problem.name}, {steps} inner steps, round {repeat}: "
              + ", ".join(f"{peer} {rounds[peer][-1]:.1f} ms" for peer in PEERS), flush=True)
    return {"problem": problem.name, "meta_batch": problem.meta_batch, "inner_steps": steps,
            "ms_per_meta_step": {peer: statistics.median(values) for peer, values in rounds.items()},
            "rounds_ms": rounds, "gradient_difference_vs_loop": agreement}


def _high_water_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def _resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _release_free_memory() -> None:
    """Hands the allocator's free pages back to the OS (glibc), so that the resident set is what is in use."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def probe(algorithm: str, steps: int, args: argparse.Namespace) -> None:
    """One meta-step in this (fresh) process; prints its peak memory as JSON."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    module = conv4()
    batch = episodes(args.memory_meta_batch, queries=args.queries)
    loss_fn, params = loss_of(module), named_params(module)

    def meta_step(inner_steps: int) -> None:
        if algorithm == "imaml":
            hypergradient, _ = imaml_hypergradient(loss_fn, params, *batch, steps=inner_steps, lr=0.4, lam=1.0,
                                                   cg_steps=args.cg_steps)
            for name, param in params.items():
                param.grad = hypergradient[name]
        else:
            adapted_losses(loss_fn, params, *batch, steps=inner_steps, lr=0.4,
                           first_order=algorithm == "fomaml").mean().backward()
        module.zero_grad(set_to_none=True)

    meta_step(1)  # warm-up: kernels, their caches, thread pools
    _release_free_memory()
    before = _resident_kib()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark back to the resident set
        method = "VmHWM after clear_refs"
    except OSError:
        method = "ru_maxrss since the start (an overestimate)"
    meta_step(steps)
    peak = _high_water_kib() if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"algorithm": algorithm, "inner_steps": steps, "before_mib": before / 1024,
                      "peak_mib": peak / 1024, "added_mib": (peak - before) / 1024, "method": method}))


def memory_rows(args: argparse.Namespace) -> list[dict]:
    rows = []
    for steps in args.memory_steps:
        row = {"inner_steps": steps}
        for algorithm in ("maml", "fomaml", "imaml"):
            command = [sys.executable, str(Path(__file__).resolve()), "--probe", algorithm, str(steps), "--threads",
                       str(args.threads), "--memory-meta-batch", str(args.memory_meta_batch), "--queries",
                       str(args.queries), "--cg-steps", str(args.cg_steps)]
            result = subprocess.run(command, capture_output=True, text=True, check=True,
                                    env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)})
            row[algorithm] = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"memory, {steps} inner steps: " + ", ".join(
            f"{name} +{row[name]['added_mib']:.0f} MiB" for name in ("maml", "fomaml", "imaml")), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5], help="Inner steps of the timed meta-steps.")
    parser.add_argument("--meta-batch", type=int, default=16)
    parser.add_argument("--queries", type=int, default=15, help="Queries per class of the headline task.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=3, help="Meta-steps per peer and round.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed meta-steps per peer before the rounds.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, every peer and probe.")
    parser.add_argument("--memory-steps", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--memory-meta-batch", type=int, default=4)
    parser.add_argument("--cg-steps", type=int, default=5, help="iMAML's conjugate-gradient iterations.")
    parser.add_argument("--no-extra", action="store_true", help="Time the headline task only.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: --steps 1 --repeats 2 --iterations 1 "
                                                             "--warmup 1 --memory-steps 1 5.")
    parser.add_argument("--out", help="default: results/bench/meta_vmap.json (--quick: meta_vmap_quick.json)")
    parser.add_argument("--probe", nargs=2, metavar=("ALGORITHM", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe[0], int(args.probe[1]), args)
        return
    if args.quick:
        args.steps, args.repeats, args.iterations, args.warmup, args.memory_steps = [1], 2, 1, 1, [1, 5]
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()

    timings = [time_problem(problem, steps, args) for problem in problems(args) for steps in args.steps]
    memory = memory_rows(args)

    from pipeline.provenance import git_state, machine

    commit, dirty = git_state(ROOT)
    load_after = os.getloadavg()
    command = " ".join(["python", "bench/meta_vmap.py", *sys.argv[1:]])
    lines = [f"MAML meta-steps (second order, forward + backward): one vmap over the tasks against a per-task loop "
             f"and per-task module cloning; {args.threads} torch threads; median of {args.repeats} rounds of "
             f"{args.iterations}; commit {commit[:12]} (dirty: {dirty}); {machine()['cpu']}, {machine()['cores']} "
             f"cores, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; `{command}`", "",
             "| task | meta-batch | inner steps | " + " | ".join(f"{peer} ms" for peer in PEERS)
             + " | loop / vmap | clone / vmap | gradient vs loop: vmap, clone, vmap fused |",
             "|---|---|---|" + "---|" * (len(PEERS) + 3)]
    for row in timings:
        ms, agreement = row["ms_per_meta_step"], row["gradient_difference_vs_loop"]
        lines.append(f"| {row['problem']} | {row['meta_batch']} | {row['inner_steps']} | "
                     + " | ".join(f"{ms[peer]:.1f}" for peer in PEERS)
                     + f" | {ms['loop'] / ms['vmap']:.2f}x | {ms['clone'] / ms['vmap']:.2f}x | "
                     + ", ".join(f"{agreement[peer]:.1e}" for peer in ("vmap", "clone", "vmap, fused norms")) + " |")
    lines += ["", f"Peak memory added by one meta-step (Conv-4 headline task, meta-batch {args.memory_meta_batch}, "
                  f"vmapped; iMAML lam 1, {args.cg_steps} CG steps; {memory[0]['maml']['method']}, a fresh process "
                  "each):", "", "| inner steps | MAML MiB | FOMAML MiB | iMAML MiB |", "|---|---|---|---|"]
    for row in memory:
        lines.append(f"| {row['inner_steps']} | " + " | ".join(f"{row[name]['added_mib']:.0f}"
                                                               for name in ("maml", "fomaml", "imaml")) + " |")
    text = "\n".join(lines)
    print("\n" + text)
    out = Path(args.out or ROOT / "results" / "bench" / ("meta_vmap_quick.json" if args.quick else "meta_vmap.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "timings": timings, "memory": memory, "git_commit": commit,
                               "git_dirty": dirty, "machine": machine(), "load_average_before": load_before,
                               "load_average_after": load_after, "seconds": time.perf_counter() - started,
                               "command": command}, indent=2) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {out} and {out.with_suffix('.txt')} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
