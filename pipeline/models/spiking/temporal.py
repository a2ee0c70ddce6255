"""A temporal-coding spiking network with closed-form spike times (Comsa et al. 2020).

A neuron with alpha-kernel synapses (decay rate d = 1 / tau_syn) whose inputs i spiked at t_i < t
has the potential V(t) = sum_i w_i (t - t_i) exp(-d (t - t_i)) = exp(-d t) (A t - B), with
A = sum_i w_i exp(d t_i) and B = sum_i w_i t_i exp(d t_i) over those inputs. V reaches the
threshold theta at
    t* = B / A - W0(z) / d,    z = -d theta / A exp(d B / A),
W0 the principal branch of the Lambert W function (the rising crossing); there is no crossing when
A <= 0 or z < -1/e (the potential's peak stays under the threshold). The inputs are taken in order
of time: the spike time is the first crossing of a prefix that falls after that prefix's last
input and before the next one. Every neuron fires at most once; a neuron that never reaches the
threshold has time inf.

Gradients. The formula is differentiable, so autograd gives the gradient of every spike time with
respect to the weights and to the input times (through W0' = exp(-W) / (1 + W)), exactly, with two
exceptions. W0' diverges at the branch point (a neuron whose peak barely reaches the threshold):
training caps it at `clip_derivative` (default 5; `lambert_w0`'s `clip`), so those spike times get
a clipped gradient. A neuron that stays silent has no spike time and so no gradient: training
gives it extra terms instead (`SNNTemporal.objective`), not a gradient of anything it computes:
fire_cost x minus the drive (summed weights of the spikes received) of a correct output that stays
silent, revive_cost x minus the drive of hidden neurons silent on the whole batch; a silent output
enters the softmax at a fixed late time, which has no gradient.

Energy (`SNNTemporal.spike_batch`; prices and the other families' rules in `stats`). Inference
evaluates the closed form event by event, the inputs in time order, each neuron stopping at its
spike. Counted:
- per input spike, once for all the neurons it reaches: e = exp(d t_i), t_i e, theta e and
  t_i - tau_syn (an exponential, 3 multiplies, an add); a sync pulse's are constants after training;
- per input spike and neuron it reaches before that neuron fires: A += w e and B += w t_i e, two
  multiply-accumulates (a pulse: two adds, w e and w t e being constants); then whether the
  neuron crosses before the next input: A t_next - B >= theta e_next, and whether the peak
  B / A + tau_syn comes first (A (t_next - tau_syn) > B, A > 0): 2 multiplies, 4 adds/compares;
- per neuron: whether its peak reaches the threshold, z >= -1/e (B / A, d theta / A, two
  multiplies, an exponential, a compare: divides priced as multiplies);
- per neuron that fires: W0(z) as `_lambert_w0` computes it (LAMBERT_W_MULTS multiplies,
  LAMBERT_W_ADDS adds/compares, HALLEY_ITERATIONS exponentials), then t* (a multiply, an add).
Assumed: events arrive in time order (no sort counted); a potential that rises above the
threshold and falls back between two inputs other than the last (the peak test passing inside an
interval, which then needs V at the peak) is rare and costs nothing beyond the per-neuron test.
The same-shaped non-spiking network: an MLP of the same widths without the pulses, its MACs, a
bias add and a ReLU compare per hidden neuron, a bias add per output.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.models.base import Supervised
from pipeline.models.spiking import SNNTemporalSpec, stats
from pipeline.models.spiking.encoding import spike_times
from pipeline.spec.components import TrainSpec

INVERSE_E = math.exp(-1)


HALLEY_ITERATIONS = 8
LAMBERT_W_MULTS = 7 + HALLEY_ITERATIONS * 6
LAMBERT_W_ADDS = 7 + HALLEY_ITERATIONS * 7 + 2
LAMBERT_W_EXPS = HALLEY_ITERATIONS
"""What `_lambert_w0` computes per value, for the energy estimate (divides and the square root
priced as multiplies): the start, taking the branch-point series (the one around 0 is cheaper):
the clamp, p = sqrt(2 (e z + 1)) and its clamp, the branch test and -1 + p - p^2/3 + 11/72 p^3 (7
multiplies, 7 adds/compares); each Halley iteration (it runs all of them, converged or not):
exp(w), f = w e^w - z, w + 1 and its clamp, e^w (w + 1), w + 2, (w + 2) f, 2 (w + 1), the two
divides, the denominator's subtraction, the finiteness test and w - step (6 multiplies, 7 adds/
compares, an exponential); the final clamp (2 compares)."""


def _lambert_w0(z: torch.Tensor) -> torch.Tensor:
    """W0(z) for z in [-1/e, 0]: a series start (around the branch point, or around 0), then
    Halley's iteration (cubic convergence) to machine precision."""
    z = z.clamp(min=-INVERSE_E)
    p = (2 * (math.e * z + 1)).clamp_min(0).sqrt()
    w = torch.where(z < -0.25, -1 + p - p * p / 3 + 11 / 72 * p ** 3, z - z * z + 1.5 * z ** 3)
    for _ in range(HALLEY_ITERATIONS):
        ew = torch.exp(w)
        f = w * ew - z
        w1 = (w + 1).clamp_min(1e-12)
        step = f / (ew * w1 - (w + 2) * f / (2 * w1))
        w = w - torch.where(torch.isfinite(step), step, torch.zeros_like(step))
    return w.clamp(-1, 0)


class _LambertW0(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, clip: float) -> torch.Tensor:
        w = _lambert_w0(z)
        ctx.save_for_backward(w)
        ctx.clip = clip
        return w

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (w,) = ctx.saved_tensors
        return grad * (torch.exp(-w) / (1 + w).clamp_min(1e-12)).clamp_max(ctx.clip), None


def lambert_w0(z: torch.Tensor, clip: float = math.inf) -> torch.Tensor:
    """The principal branch of the Lambert W function on [-1/e, 0], differentiable; its
    derivative exp(-W) / (1 + W), which diverges at the branch point, capped at `clip`."""
    return _LambertW0.apply(z, clip)


def first_spike_times(times: torch.Tensor, weights: torch.Tensor, decay: float, threshold: float,
                      clip: float = math.inf) -> torch.Tensor:
    """Output spike times [B, M] (inf: no spike) of input spike times [B, N] (inf: no spike)
    through weights [N, M]. `clip` caps W0's derivative: a neuron whose peak potential barely
    grazes the threshold has a spike time with unbounded derivatives.

    Which prefix of the time-ordered inputs holds the crossing is found without W: prefix k's
    potential V_k rises until its peak at B/A + 1/d, so it crosses in [t_k, t_k+1] exactly when
    V_k(t_k) < theta and V_k(min(t_k+1, peak)) >= theta. That search is piecewise constant (no
    gradient); the spike time is then computed, differentiably, from that prefix alone."""
    finite = torch.isfinite(times)
    latest = torch.where(finite, times, torch.full_like(times, -math.inf)).amax(dim=1, keepdim=True)
    # Every sum is taken relative to the latest input (exp(d (t_i - ref)) <= 1: no overflow);
    # the spike time does not depend on the reference, so no gradient flows through it.
    ref = torch.where(torch.isfinite(latest), latest, torch.zeros_like(latest)).detach()
    safe_times = torch.where(finite, times, ref)
    with torch.no_grad():
        sorted_times, order = times.sort(dim=1)
        count = max(1, int(finite.sum(dim=1).max()))  # inputs that never spike sort last: drop them
        sorted_times, order = sorted_times[:, :count], order[:, :count]
        ordered = torch.isfinite(sorted_times)
        t = torch.where(ordered, sorted_times, ref)
        scale = torch.exp(decay * (t - ref)) * ordered
        w = weights.detach()[order]  # [B, N, M], in the order of the input times
        a = torch.cumsum(w * scale[..., None], dim=1)
        b = torch.cumsum(w * (t * scale)[..., None], dim=1)
        rising = a > 0
        a = torch.where(rising, a, torch.ones_like(a))
        peak = b / a + 1 / decay
        following = torch.cat([sorted_times[:, 1:], torch.full_like(t[:, :1], math.inf)], dim=1)[..., None]
        begin = t[..., None].expand_as(a)
        finish = torch.minimum(following, peak)

        def at(s: torch.Tensor) -> torch.Tensor:  # V_k(s), relative to the reference
            return torch.exp(-decay * (s - ref[..., None])) * (a * s - b)

        valid = rising & ordered[..., None] & (begin <= peak) & (at(begin) < threshold) & (at(finish) >= threshold)
        fires = valid.any(dim=1)  # [B, M]
        first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)  # the earliest prefix that crosses
        cutoff = torch.gather(t[..., None].expand_as(a), 1, first)  # its last input's time [B, 1, M]
        member = (finite[..., None] & (times[..., None] <= cutoff)).to(times.dtype)  # [B, N, M]
    scale = torch.exp(decay * (safe_times - ref))
    a = torch.einsum("bnm,bn,nm->bm", member, scale, weights)
    b = torch.einsum("bnm,bn,nm->bm", member, safe_times * scale, weights)
    a = torch.where(fires, a, torch.ones_like(a))
    b = torch.where(fires, b, torch.zeros_like(b))
    z = (-decay * threshold / a * torch.exp((decay * (b / a - ref)).clamp(max=60))).clamp(-INVERSE_E, 0)
    spike = b / a - lambert_w0(z, clip) / decay
    return torch.where(fires, spike, torch.full_like(spike, math.inf))


CHECK_MULTS, CHECK_ADDS = 2, 4
"""One test whether a neuron crosses the threshold before the next input (module docstring)."""
CHECK_ENERGY_PJ = CHECK_MULTS * stats.ENERGY_MULT_PJ + CHECK_ADDS * stats.ENERGY_AC_PJ


def closed_form_count(name: str, inputs: torch.Tensor, pulse_times: torch.Tensor, outputs: torch.Tensor,
                      readout: bool = False) -> tuple[stats.LayerCount, tuple[float, float, float]]:
    """What one layer's closed form costs on a batch (totals; the rules are in the module's
    docstring): input spike times [B, N] and the pulses' [P] (inf: no spike), its spike times
    [B, M]. A neuron integrates the inputs before its spike (all of them if it stays silent).
    Returns the layer's count and (exponentials, Lambert W evaluations, crossing checks)."""
    batch, inputs_count = inputs.shape
    neurons = outputs.shape[1]
    arriving = torch.isfinite(inputs).sum().item()
    data = (inputs[:, :, None] < outputs[:, None, :]).sum().item()  # inf < inf is false: silent inputs drop
    pulses = (pulse_times[None, :, None] < outputs[:, None, :]).sum().item()
    fired = torch.isfinite(outputs).sum().item()
    checks = data + pulses
    exps = arriving + batch * neurons + fired * LAMBERT_W_EXPS
    mults = (3 * arriving + CHECK_MULTS * checks + 4 * batch * neurons + fired * (LAMBERT_W_MULTS + 1)
             + exps * stats.EXP_MULTS)
    adds = (arriving + CHECK_ADDS * checks + batch * neurons + fired * (LAMBERT_W_ADDS + 1)
            + exps * stats.EXP_ADDS)
    count = stats.LayerCount(name, neurons, float(fired), 2.0 * pulses, inputs_count * neurons, 2.0 * data,
                             float(mults), float(adds), (1 if readout else 2) * neurons)
    return count, (float(exps), float(fired), float(checks))


def potential(t: torch.Tensor, times: torch.Tensor, weights: torch.Tensor, decay: float) -> torch.Tensor:
    """V at times t [S] of neurons with weights [N, M] after input spikes times [N]: [S, M]."""
    since = t[:, None] - times[None, :]  # [S, N]
    kernel = torch.where(since > 0, since * torch.exp(-decay * since.clamp_min(0)), torch.zeros_like(since))
    return kernel @ weights


class TemporalLayer(nn.Module):
    """A layer of alpha-synapse neurons that fire once, with learnable synchronisation pulses:
    extra input spikes at learnable times with learnable weights."""

    def __init__(self, inputs: int, outputs: int, spec: SNNTemporalSpec):
        super().__init__()
        self.decay, self.threshold, self.clip = 1 / spec.tau_syn, spec.threshold, spec.clip_derivative
        last = spec.encoding.steps - 1
        self.pulse_times = nn.Parameter(torch.linspace(0, last, spec.sync_pulses + 2)[1:-1].clone())
        # A silent neuron has no spike time and so no gradient: the pulses start strong (together
        # they peak at `pulse_strength` thresholds), the other weights small and positive on
        # average; a hidden neuron that falls silent anyway is raised by `revive_cost`.
        pulse_weight = spec.pulse_strength * spec.threshold * math.e / spec.tau_syn / max(1, spec.sync_pulses)
        pulses = torch.full((spec.sync_pulses, outputs), pulse_weight)
        data = torch.randn(inputs, outputs) / math.sqrt(inputs) + spec.weight_mean / inputs
        self.weight = nn.Parameter(torch.cat([data, pulses]) * spec.threshold)

    def inputs(self, times: torch.Tensor) -> torch.Tensor:
        return torch.cat([times, self.pulse_times.expand(len(times), -1)], dim=1)

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        return first_spike_times(self.inputs(times), self.weight, self.decay, self.threshold, self.clip)


class TemporalCore(nn.Module):
    """Latency-coded input -> hidden temporal layers; as features for the probes, the last hidden
    layer's exp(-t / tau_syn) (0 for neurons that stay silent: earlier spikes, larger values)."""

    def __init__(self, spec: SNNTemporalSpec, input_shape: tuple[int, ...]):
        super().__init__()
        self.spec = spec
        sizes = [math.prod(input_shape), *spec.hidden]
        self.layers = nn.ModuleList(TemporalLayer(n, m, spec) for n, m in zip(sizes, sizes[1:], strict=False))
        self.out_dim = spec.hidden[-1]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return spike_times(images.flatten(1), self.spec.encoding, continuous=True)

    def run(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Spike times of the input and of every hidden layer."""
        times = [self.encode(images)]
        for layer in self.layers:
            times.append(layer(times[-1]))
        return times

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.run(images)[-1] / self.spec.tau_syn)


class SNNTemporal(Supervised):
    def __init__(self, spec: SNNTemporalSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        super().__init__(TemporalCore(spec, input_shape), train)
        self.spec = spec
        self.output = TemporalLayer(spec.hidden[-1], num_classes, spec)
        # A silent output neuron counts as firing this late in the loss (it gets no gradient).
        self.silent_time = spec.encoding.steps - 1 + 8 * spec.tau_syn

    def output_times(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        times = self.encoder.run(images)
        return times, self.output(times[-1])

    def logits(self, output: torch.Tensor) -> torch.Tensor:
        """Earlier spikes, larger logits: -t / temperature, silent neurons at the silent time."""
        late = torch.full_like(output, self.silent_time)
        return -torch.where(torch.isfinite(output), output, late) / self.spec.temperature

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.logits(self.output_times(inputs)[1])

    @staticmethod
    def decide(output: torch.Tensor) -> torch.Tensor:
        """The class of the first output spike; -1 where no output neuron fires."""
        decided = torch.isfinite(output).any(dim=1)
        return torch.where(decided, output.argmin(dim=1), torch.full_like(decided, -1, dtype=torch.long))

    def objective(self, images: torch.Tensor, labels: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, cross-entropy, output spike times, whether the correct output stayed silent).
        Cross-entropy of softmax(-t / temperature) over the output spike times; plus time_cost x the
        mean squared output spike time (it keeps the outputs firing, early); plus, for a correct
        output neuron that stays silent and so has no spike time to move, fire_cost x minus its
        drive (the summed weights of the spikes it received), which raises it towards threshold;
        plus revive_cost x the same for hidden neurons silent on the whole batch."""
        times, output = self.output_times(images)
        ce = F.cross_entropy(self.logits(output), labels)
        fired = torch.isfinite(output)
        lateness = torch.where(fired, output, torch.zeros_like(output)).square().sum() / fired.sum().clamp_min(1)
        correct_silent = ~fired.gather(1, labels[:, None]).squeeze(1)
        received = torch.isfinite(self.output.inputs(times[-1])).to(output.dtype)  # [B, N]
        drive = (received * self.output.weight[:, labels].T).sum(dim=1)
        silent = -(drive * correct_silent).sum() / len(labels)
        loss = ce + self.spec.time_cost * lateness + self.spec.fire_cost * silent
        if self.spec.revive_cost:
            loss = loss + self.spec.revive_cost * self.dead_drive(times)
        return loss, ce, output, correct_silent

    def dead_drive(self, times: list[torch.Tensor]) -> torch.Tensor:
        """Minus the mean drive (summed weights of the spikes received) of the hidden neurons that
        stay silent for every sample of the batch, per hidden neuron: lowering it raises them
        towards the threshold, from where their spike times take over."""
        total = times[0].new_zeros(())
        for layer, before, after in zip(self.encoder.layers, times[:-1], times[1:], strict=True):
            dead = ~torch.isfinite(after).any(dim=0)  # [M]
            if dead.any():
                received = torch.isfinite(layer.inputs(before)).to(after.dtype)  # [B, N]
                total = total - (received @ layer.weight[:, dead]).mean(dim=0).sum() / dead.numel()
        return total

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch["input"], batch["label"]
        loss, ce, output, correct_silent = self.objective(model_input(images), labels)
        size = len(labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("train/cross_entropy", ce, on_epoch=True, on_step=False, batch_size=size, sync_dist=True)
        self.log("train/accuracy", (self.decide(output) == labels).float().mean(), on_epoch=True, on_step=False,
                 batch_size=size, sync_dist=True)
        self.log("train/correct_output_silent", correct_silent.float().mean(), on_epoch=True, on_step=False,
                 batch_size=size, sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch["input"], batch["label"]
        _, output = self.output_times(model_input(images))
        self.log("val/accuracy", (self.decide(output) == labels).float().mean(), on_epoch=True, prog_bar=True,
                 batch_size=len(labels), sync_dist=True)

    # --- evaluation ---

    def layers(self) -> list[TemporalLayer]:
        return [*self.encoder.layers, self.output]

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.decide(self.output_times(images)[1])

    @torch.no_grad()
    def spike_batch(self, images: torch.Tensor, keep_first: bool = False) -> stats.SpikeBatch:
        times, output = self.output_times(images)
        times = [t.cpu() for t in (*times, output)]
        fired = torch.isfinite(times[-1]).any(dim=1)
        names = self.layer_names()
        layers = self.layers()
        counts, exps, lambert_ws, checks = [], 0.0, 0.0, 0.0
        for index, (name, layer) in enumerate(zip(names, layers, strict=True)):
            count, operations = closed_form_count(name, times[index], layer.pulse_times.detach().cpu(),
                                                  times[index + 1], readout=index == len(layers) - 1)
            counts.append(count)
            exps, lambert_ws, checks = exps + operations[0], lambert_ws + operations[1], checks + operations[2]
        samples = len(times[-1])
        extras = {"time_to_decision": (times[-1].amin(dim=1)[fired].sum().item(), fired.sum().item()),
                  "decided": (fired.sum().item(), len(fired)),
                  "exp_per_sample": (exps, samples), "lambert_w_per_sample": (lambert_ws, samples),
                  "crossing_checks_per_sample": (checks, samples),
                  # The part of energy_snn_neuron_nj that the search for each neuron's crossing costs.
                  "energy_crossing_search_nj": (checks * CHECK_ENERGY_PJ / 1000, samples)}
        if keep_first:
            extras["input_spikes_per_sample"] = (torch.isfinite(times[0]).sum().item(), len(times[0]))
        # Each neuron fires at most once: the firing rate is the share of neurons that fire (steps 1).
        return stats.SpikeBatch(self.decide(times[-1]), counts, [t[0] for t in times] if keep_first else None,
                                steps=1, extras=extras)

    def layer_names(self) -> list[str]:
        return [f"hidden{i + 1}" for i in range(len(self.encoder.layers))] + ["output"]

    def spike_pictures(self, first: list[torch.Tensor], label: str, classes: tuple[str, ...],
                       out: Path) -> list[Path]:
        from pipeline.models.spiking import figures

        grid, potentials = self.output_potentials(first)
        return [figures.spike_times(first, ["input", *self.layer_names()], f"spike times, one test image ({label})",
                                    out / "spike_raster.png"),
                figures.potentials_to_spikes(grid, potentials, first[-1], self.spec.threshold, classes,
                                             f"output potentials, one test image ({label})",
                                             out / "membrane_trace.png")]

    def output_potentials(self, times: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(time grid, the output neurons' potentials V(t) on it [T, classes]) of one example, from
        its hidden spike times and the pulses."""
        inputs = torch.cat([times[-2], self.output.pulse_times.detach().cpu()])
        weight = self.output.weight.detach().cpu()
        received = torch.isfinite(inputs)
        end = float(self.silent_time)
        start = min(0.0, float(inputs[received].min())) if received.any() else 0.0  # pulses may move earlier
        grid = torch.linspace(start, end, 400)
        return grid, potential(grid, inputs[received].cpu(), weight[received], self.output.decay)
