"""LIF network forward+backward throughput: ours against snnTorch, same process, same sizes,
same time steps, same surrogate (fast sigmoid, slope 25), same weights, CPU.

    pip install -e '.[bench]'      # snnTorch
    python bench/snn_throughput.py [--sizes 128x32x25,512x128x25] [--repeats 10]

Each size is hidden units x batch x time steps.

The network: 784 Bernoulli inputs -> Linear -> LIF -> Linear -> LIF (10 outputs), cross-entropy on
the output spike counts. snnTorch runs it the way its tutorials do, one time step at a time
through its `Leaky` neurons. Ours runs each layer over the whole sequence: one matrix product
for all T steps (a feed-forward layer's input does not depend on its own output) and the fused
LIF sequence with its hand-written backward pass. Both compute the same dynamics: snnTorch's
U <- beta U + I - S thr equals ours, v <- alpha v + (1 - alpha) I - z v_th, with ours'
weights divided by (1 - alpha); the script checks the spikes and gradients agree.

What to expect on a CPU: with small layers snnTorch's per-step Python and autograd overhead
dominates and ours is several times faster; with large ones both spend most of their time in the
same matrix products, and the ratio approaches 1.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.spiking import NeuronSpec, SurrogateSpec
from pipeline.models.spiking.neurons import lif_layer

TAU = 20.0
SURROGATE = SurrogateSpec(name="fast_sigmoid", slope=25.0)


class Ours(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, hidden), nn.Linear(hidden, 10)
        self.neuron = NeuronSpec(tau_mem=TAU)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:  # [T, B, 784] -> output spikes [T, B, 10]
        hidden = lif_layer(self.fc1(spikes), self.neuron, SURROGATE)[0]
        return lif_layer(self.fc2(hidden), self.neuron, SURROGATE)[0]


class Peer(nn.Module):
    def __init__(self, hidden: int):
        import snntorch as snn
        from snntorch import surrogate

        super().__init__()
        beta = math.exp(-1 / TAU)
        self.fc1, self.fc2 = nn.Linear(784, hidden), nn.Linear(hidden, 10)
        grad = surrogate.fast_sigmoid(slope=SURROGATE.slope)
        self.lif1 = snn.Leaky(beta=beta, spike_grad=grad)
        self.lif2 = snn.Leaky(beta=beta, spike_grad=grad)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        out = []
        for x in spikes:
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            out.append(spk2)
        return torch.stack(out)


def copy_weights(peer: Peer, ours: Ours) -> None:
    """Ours' weights = the peer's / (1 - alpha): the same membrane potentials."""
    scale = 1 / (1 - math.exp(-1 / TAU))
    with torch.no_grad():
        for mine, theirs in ((ours.fc1, peer.fc1), (ours.fc2, peer.fc2)):
            mine.weight.copy_(theirs.weight * scale)
            mine.bias.copy_(theirs.bias * scale)


def step(model: nn.Module, spikes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    out = model(spikes)
    F.cross_entropy(out.sum(dim=0), labels).backward()
    return out


def measure(hidden: int, batch: int, steps: int, repeats: int) -> float:
    torch.manual_seed(0)
    peer, ours = Peer(hidden), Ours(hidden)
    with torch.no_grad():  # drive the hidden layer into a realistic firing regime
        peer.fc1.weight.mul_(4)
    copy_weights(peer, ours)
    spikes = torch.bernoulli(torch.full((steps, batch, 784), 0.2))
    labels = torch.randint(0, 10, (batch,))

    out_peer, out_ours = step(peer, spikes, labels), step(ours, spikes, labels)
    same_spikes = (out_peer == out_ours).float().mean().item()
    scale = 1 - math.exp(-1 / TAU)  # d/dW of ours = d/dW of peer * (1 - alpha)
    grad_cos = F.cosine_similarity(peer.fc1.weight.grad.flatten(), ours.fc1.weight.grad.flatten() / scale, dim=0)

    times: dict[str, list[float]] = {"snnTorch": [], "ours": []}
    for _ in range(repeats):  # interleaved, so drifts in machine speed hit both alike
        for name, model in (("snnTorch", peer), ("ours", ours)):
            started = time.perf_counter()
            step(model, spikes, labels)
            times[name].append(time.perf_counter() - started)
    peer_rate, our_rate = (batch / statistics.median(times[name]) for name in ("snnTorch", "ours"))
    print(f"| 784-{hidden}-10 | {batch} | {steps} | {peer_rate:8.0f} | {our_rate:8.0f} | {our_rate / peer_rate:5.2f}x "
          f"| {100 * same_spikes:.2f}% / {grad_cos:.5f} |", flush=True)
    return our_rate / peer_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="128x32x25,256x64x25,512x128x25,512x128x100",
                        help="hidden x batch x steps, comma-separated")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"LIF network, fast sigmoid (slope 25), CPU ({torch.get_num_threads()} threads), forward+backward, "
          f"median of {args.repeats}; samples/s\n")
    print("| network | batch | T | snnTorch | ours | ratio | same output spikes / fc1 grad cosine |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        hidden, batch, steps = (int(v) for v in size.lower().split("x"))
        measure(hidden, batch, steps, args.repeats)


if __name__ == "__main__":
    main()
