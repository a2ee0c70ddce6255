"""LIF network forward+backward throughput: ours against snnTorch, each written two ways, same
process, same sizes, same time steps, same surrogate (fast sigmoid, slope 25), same weights, CPU.

    pip install -e '.[bench]'      # snnTorch
    python bench/snn_throughput.py [--sizes 128x32x25,512x128x25] [--repeats 10] [--warmup 3]

Each size is hidden units x batch x time steps.

The network: 784 Bernoulli inputs -> Linear -> LIF -> Linear -> LIF (10 outputs), cross-entropy on
the output spike counts. Four implementations of it:
- snnTorch step by step, the way its tutorials write it: at each time step Linear, then `Leaky`,
  then the next Linear and `Leaky`.
- snnTorch fast: a layer's input currents for all T steps in one Linear over [T*B, in] (a
  feed-forward layer's input does not depend on its own output), then the `Leaky` loop over
  time; then the next layer likewise.
- ours step by step: the same per-step structure as snnTorch step by step, with our one-step
  neuron (`NeuronCell.step`, through autograd).
- ours (fused): the currents strategy of snnTorch fast, then our fused LIF sequence
  (`lif_layer`) with its hand-written backward pass through time.
So ours (fused) / snnTorch fast is what the fused neuron itself gains, with the same currents
strategy on both sides, and ours (fused) / snnTorch step by step is the gain over the tutorial
way of writing it.

All four compute the same dynamics: snnTorch's U <- beta U + I - S thr equals ours,
v <- alpha v + (1 - alpha) I - z v_th, with ours' weights divided by (1 - alpha). The script
checks that every variant's output spikes equal snnTorch step by step's, and that its gradients
(all parameters, ours rescaled by (1 - alpha)) have cosine ~1 with them.

Timing: `--warmup` untimed forward+backward passes of each variant, then `--repeats` timed ones,
interleaved over the variants so drifts in machine speed hit all alike; the median is reported.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.spiking import NeuronSpec, SurrogateSpec
from pipeline.models.spiking.neurons import NeuronCell, NeuronState, lif_layer

TAU = 20.0
SURROGATE = SurrogateSpec(name="fast_sigmoid", slope=25.0)
SCALE = 1 - math.exp(-1 / TAU)
"""(1 - alpha): ours' weights are the peer's / SCALE, so ours' gradients are the peer's * SCALE."""


def all_steps(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A Linear over a whole sequence [T, B, in] as one matrix product over [T*B, in]."""
    return layer(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class Peer(nn.Module):
    """snnTorch. fast=False: Linear and Leaky one time step at a time; fast=True: each layer's
    currents for all steps at once, then the Leaky loop."""

    def __init__(self, hidden: int, fast: bool):
        import snntorch as snn
        from snntorch import surrogate

        super().__init__()
        beta = math.exp(-1 / TAU)
        self.fast = fast
        self.fc1, self.fc2 = nn.Linear(784, hidden), nn.Linear(hidden, 10)
        grad = surrogate.fast_sigmoid(slope=SURROGATE.slope)
        self.lif1 = snn.Leaky(beta=beta, spike_grad=grad)
        self.lif2 = snn.Leaky(beta=beta, spike_grad=grad)

    @staticmethod
    def neuron_loop(lif: nn.Module, currents: torch.Tensor) -> torch.Tensor:
        mem, out = lif.reset_mem(), []
        for current in currents:
            spk, mem = lif(current, mem)
            out.append(spk)
        return torch.stack(out)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:  # [T, B, 784] -> output spikes [T, B, 10]
        if self.fast:
            hidden = self.neuron_loop(self.lif1, all_steps(self.fc1, spikes))
            return self.neuron_loop(self.lif2, all_steps(self.fc2, hidden))
        mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        out = []
        for x in spikes:
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            out.append(spk2)
        return torch.stack(out)


class Ours(nn.Module):
    """Ours. fused=True: each layer's currents for all steps at once, then the fused LIF sequence;
    fused=False: Linear and our one-step neuron (`NeuronCell.step`) one time step at a time."""

    def __init__(self, hidden: int, fused: bool):
        super().__init__()
        self.fused = fused
        self.fc1, self.fc2 = nn.Linear(784, hidden), nn.Linear(hidden, 10)
        self.neuron = NeuronSpec(tau_mem=TAU)
        self.cell = NeuronCell(self.neuron, SURROGATE)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:  # [T, B, 784] -> output spikes [T, B, 10]
        if self.fused:
            hidden = lif_layer(all_steps(self.fc1, spikes), self.neuron, SURROGATE)[0]
            return lif_layer(all_steps(self.fc2, hidden), self.neuron, SURROGATE)[0]
        batch = spikes.shape[1]
        state1 = NeuronState.rest((batch, self.fc1.out_features), spikes)
        state2 = NeuronState.rest((batch, self.fc2.out_features), spikes)
        out = []
        for x in spikes:
            z1, state1 = self.cell.step(self.fc1(x), state1)
            z2, state2 = self.cell.step(self.fc2(z1), state2)
            out.append(z2)
        return torch.stack(out)


def copy_weights(source: Peer, target: nn.Module, scale: float) -> None:
    """target's weights = source's / scale (ours: scale = 1 - alpha, the same membrane potentials)."""
    with torch.no_grad():
        for mine, theirs in ((target.fc1, source.fc1), (target.fc2, source.fc2)):
            mine.weight.copy_(theirs.weight / scale)
            mine.bias.copy_(theirs.bias / scale)


def step(model: nn.Module, spikes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    out = model(spikes)
    F.cross_entropy(out.sum(dim=0), labels).backward()
    return out


def gradient(model: nn.Module, scale: float) -> torch.Tensor:
    """All parameter gradients as one vector, in the peer's units."""
    return torch.cat([p.grad.flatten() / scale for p in (model.fc1.weight, model.fc1.bias,
                                                          model.fc2.weight, model.fc2.bias)])


NAMES = ("snnTorch step", "snnTorch fast", "ours step", "ours fused")


def measure(hidden: int, batch: int, steps: int, repeats: int, warmup: int) -> None:
    torch.manual_seed(0)
    reference = Peer(hidden, fast=False)
    with torch.no_grad():  # drive the hidden layer into a realistic firing regime
        reference.fc1.weight.mul_(4)
    models: dict[str, tuple[nn.Module, float]] = {"snnTorch step": (reference, 1.0)}
    for name, model, scale in (("snnTorch fast", Peer(hidden, fast=True), 1.0),
                               ("ours step", Ours(hidden, fused=False), SCALE),
                               ("ours fused", Ours(hidden, fused=True), SCALE)):
        copy_weights(reference, model, scale)
        models[name] = (model, scale)
    spikes = torch.bernoulli(torch.full((steps, batch, 784), 0.2))
    labels = torch.randint(0, 10, (batch,))

    out_ref = step(reference, spikes, labels)
    grad_ref = gradient(reference, 1.0)
    same_spikes, grad_cos = 1.0, 1.0
    for name in NAMES[1:]:
        model, scale = models[name]
        out = step(model, spikes, labels)
        same_spikes = min(same_spikes, (out == out_ref).float().mean().item())
        grad_cos = min(grad_cos, F.cosine_similarity(gradient(model, scale), grad_ref, dim=0).item())

    for _ in range(warmup):
        for name in NAMES:
            step(models[name][0], spikes, labels)
    times: dict[str, list[float]] = {name: [] for name in NAMES}
    for _ in range(repeats):  # interleaved, so drifts in machine speed hit all alike
        for name in NAMES:
            started = time.perf_counter()
            step(models[name][0], spikes, labels)
            times[name].append(time.perf_counter() - started)
    rate = {name: batch / statistics.median(times[name]) for name in NAMES}
    print(f"| 784-{hidden}-10 | {batch} | {steps} | "
          + " | ".join(f"{rate[name]:.0f}" for name in NAMES)
          + f" | {rate['ours fused'] / rate['snnTorch fast']:.2f}x | {rate['ours fused'] / rate['snnTorch step']:.2f}x "
          f"| {100 * same_spikes:.2f}% ({100 * out_ref.mean().item():.1f}%) / {grad_cos:.5f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128x32x25,256x64x25,512x128x25,512x128x100",
                        help="hidden x batch x steps, comma-separated")
    parser.add_argument("--repeats", type=int, default=10, help="timed passes per variant and size (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes per variant and size before timing")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 1:
        parser.error("--repeats and --warmup must be >= 1")
    print(f"LIF network, fast sigmoid (slope 25), CPU: os.cpu_count() = {os.cpu_count()}, "
          f"torch.get_num_threads() = {torch.get_num_threads()}; forward+backward, {args.warmup} untimed warm-up "
          f"passes, then median of {args.repeats}; samples/s\n")
    print("| network | batch | T | snnTorch step by step | snnTorch fast (currents over all T) | ours step by step "
          "| ours (fused) | ours / snnTorch fast | ours / snnTorch step | identical output spikes (output firing rate) "
          "/ min gradient cosine, all variants vs snnTorch step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        hidden, batch, steps = (int(v) for v in size.lower().split("x"))
        measure(hidden, batch, steps, args.repeats, args.warmup)


if __name__ == "__main__":
    main()
