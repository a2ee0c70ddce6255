"""A long short-term memory spiking network (LSNN, Bellec et al. 2018) trained by e-prop
(Bellec et al. 2020) or by backpropagation through time.

Dynamics, per time step t, for every recurrent neuron j (LIF units have beta_j = 0):
    I_t = W_in x_t + W_rec z_{t-1}                       (no self-connections)
    v_t = alpha v_{t-1} + (1 - alpha) I_t - v_th z_{t-1}   (reset by subtraction)
    A_t = v_th + beta_j b_{t-1},   z_t = H(v_t - A_t),   b_t = rho b_{t-1} + (1 - rho) z_t
    y_t = kappa y_{t-1} + (1 - kappa)(W_out z_t + b_out)  (leaky readout)
Loss: the readout's cross-entropy averaged over the decision window, plus the firing-rate
regulariser rate_cost / 2 * sum_j (f_j - f_target)^2, f_j the neuron's spikes per step.

e-prop. With psi_t the surrogate derivative dz_t/dv_t, the eligibility of synapse ji (presynaptic
input p_i: x_i,t or z_i,t-1) is the derivative of z_jt through the neuron's own state only:
    eps_v_t = alpha eps_v_{t-1} + (1 - alpha) p_i,t          (the same for every j: [B, inputs])
    e_t     = psi_t (eps_v_t - beta_j eps_b_{t-1})
    eps_b_t = rho eps_b_{t-1} + (1 - rho) e_t
The learning signal L_jt = (1 - kappa) sum_k B_jk delta_kt, delta_t = dLoss/dy_t, B = W_out^T
(symmetric) or fixed random, and the update sum_t L_t ebar_t with ebar_t = kappa ebar_{t-1} + e_t
(the readout's leak applied to the traces). Everything is accumulated as the sequence runs:
nothing is stored over time and nothing runs backwards. With symmetric feedback this is exactly
the gradient BPTT computes when the recurrent spikes z_{t-1} are held constant (tested).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.models.base import Supervised
from pipeline.models.spiking import EncodingSpec, LSNNSpec, figures, stats
from pipeline.models.spiking.encoding import delta as delta_encode
from pipeline.models.spiking.surrogates import pseudo_derivative_, spike
from pipeline.spec.components import TrainSpec


def input_features(input_shape: tuple[int, ...]) -> int:
    """Features per time step: a sequence's channels, or an image row's pixels."""
    return input_shape[0] if len(input_shape) == 2 else input_shape[0] * input_shape[2]


class LSNNCore(nn.Module):
    """The recurrent population; as features for the probes, its firing rates [B, hidden]."""

    def __init__(self, spec: LSNNSpec, input_shape: tuple[int, ...]):
        super().__init__()
        self.spec = spec
        features = input_features(input_shape)
        self.inputs = 2 * features if spec.input == "delta" else features
        hidden = spec.hidden
        self.w_in = nn.Parameter(torch.randn(hidden, self.inputs) / math.sqrt(self.inputs))
        self.w_rec = nn.Parameter(torch.randn(hidden, hidden) / math.sqrt(hidden))
        self.register_buffer("rec_mask", 1 - torch.eye(hidden))
        beta = torch.zeros(hidden)
        beta[hidden - spec.adaptive:] = spec.neuron.beta
        self.register_buffer("beta", beta)
        self.out_dim = hidden

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs [B, C, L] (or images [B, C, H, W], rows as time) -> [T, B, inputs], each element
        held for `repeat` steps (a delta spike only on the first of them)."""
        spec = self.spec
        if spec.input == "delta":
            steps = delta_encode(x, EncodingSpec(kind="delta", threshold=spec.delta_threshold))
        elif x.dim() == 4:
            steps = x.permute(2, 0, 1, 3).flatten(2)
        else:
            steps = x.permute(2, 0, 1)
        if spec.repeat == 1:
            return steps
        if spec.input == "delta":
            held = steps.new_zeros(steps.shape[0] * spec.repeat, *steps.shape[1:])
            held[::spec.repeat] = steps
            return held
        return steps.repeat_interleave(spec.repeat, dim=0)

    def weights(self) -> torch.Tensor:
        """[W_in, W_rec] side by side: [hidden, inputs + hidden]."""
        return torch.cat([self.w_in, self.w_rec * self.rec_mask], dim=1)

    def run(self, inputs: torch.Tensor, detach_recurrent: bool = False) -> dict[str, torch.Tensor]:
        """Spikes, potentials and thresholds [T, B, hidden] of inputs [T, B, inputs], through
        autograd (BPTT). `detach_recurrent` holds z_{t-1} constant where it enters I_t."""
        spec, neuron = self.spec, self.spec.neuron
        alpha, rho, v_th = neuron.alpha, neuron.rho, neuron.threshold
        batch, hidden = inputs.shape[1], spec.hidden
        v = b = z = inputs.new_zeros(batch, hidden)
        left = torch.zeros(batch, hidden, dtype=torch.int32, device=inputs.device)
        w = self.weights()
        spikes, potentials, thresholds = [], [], []
        for x in inputs:
            recurrent = z.detach() if detach_recurrent else z
            current = torch.cat([x, recurrent], dim=1) @ w.T
            v = alpha * v + (1 - alpha) * current - v_th * z.detach()
            threshold = v_th + self.beta * b
            z = spike(v - threshold, spec.surrogate, v_th)
            if neuron.refractory:
                z = z * (left == 0).to(z.dtype)
                left = torch.where(z > 0, neuron.refractory, (left - 1).clamp_min(0)).to(torch.int32)
            b = rho * b + (1 - rho) * z
            spikes.append(z)
            potentials.append(v)
            thresholds.append(threshold.expand_as(v))
        return {"spikes": torch.stack(spikes), "potentials": torch.stack(potentials),
                "thresholds": torch.stack(thresholds)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.sequence(x))["spikes"].mean(dim=0)


class LSNN(Supervised):
    def __init__(self, spec: LSNNSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        spec.check_input(input_shape)
        super().__init__(LSNNCore(spec, input_shape), train)
        self.spec = spec
        self.input_shape = tuple(input_shape)
        self.readout = nn.Linear(spec.hidden, num_classes)
        # Random e-prop's feedback weights: fixed, drawn like the readout's own.
        bound = 1 / math.sqrt(spec.hidden)
        self.register_buffer("feedback", torch.empty(spec.hidden, num_classes).uniform_(-bound, bound))

    # --- the network and its objective (shared by BPTT and e-prop) ---

    def readout_sequence(self, spikes: torch.Tensor) -> torch.Tensor:
        """y_t = kappa y_{t-1} + (1 - kappa)(W_out z_t + b_out): [T, B, classes]."""
        kappa = self.spec.kappa
        drive = (1 - kappa) * self.readout(spikes)
        outputs, y = [], torch.zeros_like(drive[0])
        for step in drive:
            y = kappa * y + step
            outputs.append(y)
        return torch.stack(outputs)

    def window(self, steps: int) -> int:
        """The first time step of the decision window."""
        return steps - (self.spec.decision_steps or steps)

    def objective(self, outputs: torch.Tensor, spikes: torch.Tensor, labels: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss with the rate regulariser, cross-entropy alone)."""
        decision = outputs[self.window(len(outputs)):]
        ce = F.cross_entropy(decision.flatten(0, 1), labels.repeat(len(decision)))
        rates = spikes.mean(dim=(0, 1))
        regulariser = self.spec.rate_cost / 2 * (rates - self.spec.rate_target).square().sum()
        return ce + regulariser, ce

    def logits(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs[self.window(len(outputs)):].mean(dim=0)

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        spikes = self.encoder.run(self.encoder.sequence(inputs))["spikes"]
        return self.logits(self.readout_sequence(spikes))

    # --- e-prop ---

    @torch.no_grad()
    def eprop(self, inputs: torch.Tensor, labels: torch.Tensor, feedback: str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Run inputs [T, B, inputs] once, forward only, accumulating the e-prop update as it goes.
        Returns (loss, cross-entropy, logits, {parameter name: update}), the update in the form of a
        gradient (the optimiser steps against it)."""
        spec, neuron = self.spec, self.spec.neuron
        alpha, rho, kappa, v_th = neuron.alpha, neuron.rho, spec.kappa, neuron.threshold
        steps, batch = inputs.shape[:2]
        hidden, adaptive = spec.hidden, spec.adaptive
        core = self.encoder
        w = core.weights()
        w_out, b_out = self.readout.weight, self.readout.bias
        feedback_weights = w_out.T if (feedback or spec.feedback) == "symmetric" else self.feedback
        beta = core.beta[hidden - adaptive:, None]
        onehot = F.one_hot(labels, w_out.shape[0]).to(inputs.dtype)
        start = self.window(steps)
        per_step = 1 / (batch * (steps - start))  # the loss averages over the batch and the window

        zeros = inputs.new_zeros
        v, b, z, y = zeros(batch, hidden), zeros(batch, hidden), zeros(batch, hidden), zeros(batch, len(b_out))
        left = torch.zeros(batch, hidden, dtype=torch.int32, device=inputs.device)
        eps_v = zeros(batch, w.shape[1])
        eps_b = zeros(batch, adaptive, w.shape[1])
        filtered = zeros(batch, hidden, w.shape[1])  # ebar
        traces_sum = zeros(hidden, w.shape[1])  # sum over batch and time of e (for the regulariser)
        filtered_spikes = zeros(batch, hidden)
        spike_count = zeros(hidden)
        grad_w, grad_out, grad_bias = torch.zeros_like(w), torch.zeros_like(w_out), torch.zeros_like(b_out)
        ce = inputs.new_zeros(())
        logits = zeros(batch, len(b_out))
        for t, x in enumerate(inputs):
            presynaptic = torch.cat([x, z], dim=1)
            v = alpha * v + (1 - alpha) * (presynaptic @ w.T) - v_th * z
            threshold = v_th + core.beta * b
            psi = pseudo_derivative_(v - threshold, spec.surrogate, v_th)
            z = (v >= threshold).to(v.dtype)
            if neuron.refractory:
                free = (left == 0).to(v.dtype)
                z.mul_(free)
                psi.mul_(free)
                left = torch.where(z > 0, neuron.refractory, (left - 1).clamp_min(0)).to(torch.int32)
            b = rho * b + (1 - rho) * z
            y = kappa * y + (1 - kappa) * (z @ w_out.T + b_out)
            # Eligibility traces: the neuron's own dynamics only.
            eps_v.mul_(alpha).add_(presynaptic, alpha=1 - alpha)
            e = psi[:, :, None] * eps_v[:, None, :]
            if adaptive:
                e[:, hidden - adaptive:] -= psi[:, hidden - adaptive:, None] * beta * eps_b
                eps_b.mul_(rho).add_(e[:, hidden - adaptive:], alpha=1 - rho)
            filtered.mul_(kappa).add_(e)
            traces_sum += e.sum(dim=0)
            filtered_spikes.mul_(kappa).add_(z)
            spike_count += z.sum(dim=0)
            if t >= start:
                log_p = F.log_softmax(y, dim=1)
                ce -= (log_p * onehot).sum() * per_step
                delta = (log_p.exp() - onehot) * per_step  # dLoss/dy_t
                learning_signal = (1 - kappa) * delta @ feedback_weights.T  # [B, hidden]
                grad_w += torch.einsum("bj,bji->ji", learning_signal, filtered)
                grad_out += (1 - kappa) * delta.T @ filtered_spikes
                grad_bias += (1 - kappa ** (t + 1)) * delta.sum(dim=0)
                logits += y / (steps - start)
        rates = spike_count / (batch * steps)
        excess = rates - spec.rate_target
        grad_w += (spec.rate_cost * excess / (batch * steps))[:, None] * traces_sum
        loss = ce + spec.rate_cost / 2 * excess.square().sum()
        features = core.inputs
        grads = {"encoder.w_in": grad_w[:, :features], "encoder.w_rec": grad_w[:, features:] * core.rec_mask,
                 "readout.weight": grad_out, "readout.bias": grad_bias}
        return loss, ce, logits, grads

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, labels = batch["input"], batch["label"]
        inputs = self.encoder.sequence(model_input(x))
        if self.spec.learning == "bptt":
            spikes = self.encoder.run(inputs)["spikes"]
            outputs = self.readout_sequence(spikes)
            loss, ce = self.objective(outputs, spikes, labels)
            logits, to_minimise = self.logits(outputs), loss
        else:
            loss, ce, logits, updates = self.eprop(inputs, labels)
            to_minimise = self.as_gradients(updates)  # the e-prop update lands in each .grad
        size = len(labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("train/cross_entropy", ce, on_epoch=True, on_step=False, batch_size=size, sync_dist=True)
        self.log("train/accuracy", (logits.argmax(dim=1) == labels).float().mean(), on_epoch=True,
                 on_step=False, batch_size=size, sync_dist=True)
        return to_minimise

    # --- evaluation ---

    def layer_counts(self, spikes: torch.Tensor, inputs: torch.Tensor) -> list[stats.LayerCount]:
        """Totals over the batch: spikes, synaptic operations (each spike times the synapses it
        drives; the analog input's multiply-accumulates apart), neuron updates (every neuron at
        every step; the ALIF ones with their adaptation; the readout averaged over the decision
        window), and the MACs and per-neuron operations of the same-shaped non-spiking recurrent
        network over the same steps (`stats` has the rules)."""
        spec = self.spec
        steps = len(spikes)
        batch = spikes.shape[1]
        hidden, adaptive = spec.hidden, spec.adaptive
        features = self.encoder.inputs
        classes = self.readout.out_features
        total = spikes.sum().item()
        refractory = bool(spec.neuron.refractory)
        layers = []
        for name, population in (("lif", slice(0, hidden - adaptive)), ("alif", slice(hidden - adaptive, hidden))):
            size = population.stop - population.start
            if not size:
                continue
            own = spikes[:, :, population].sum().item()
            recurrent_ops = total * size - own  # no self-connections
            if spec.input == "delta":
                input_ops, analog = inputs.sum().item() * size, 0.0
            else:
                input_ops, analog = 0.0, steps * batch * features * size
            mults, adds = stats.neuron_updates(steps * batch * size, own, name == "alif", refractory)
            layers.append(stats.LayerCount(name, size, own, recurrent_ops + input_ops,
                                           steps * (features + hidden) * size, analog, mults, adds, 2 * steps * size))
        mults, adds = stats.readout_updates(steps * batch * classes, (steps - self.window(steps)) * batch * classes)
        layers.append(stats.LayerCount("readout", 0, 0.0, total * classes, steps * hidden * classes, 0.0, mults, adds,
                                       steps * classes))
        return layers

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(x).argmax(dim=1)

    @torch.no_grad()
    def spike_batch(self, x: torch.Tensor, keep_first: bool = False) -> stats.SpikeBatch:
        sequence = self.encoder.sequence(x)
        record = self.encoder.run(sequence)
        predicted = self.logits(self.readout_sequence(record["spikes"])).argmax(dim=1)
        counts = self.layer_counts(record["spikes"].cpu(), sequence.cpu())
        first = ({k: v[:, 0].cpu() for k, v in record.items()} | {"inputs": sequence[:, 0].cpu()}
                 if keep_first else None)
        return stats.SpikeBatch(predicted, counts, first, steps=len(record["spikes"]))

    def spike_pictures(self, first: dict[str, torch.Tensor], label: str, classes: tuple[str, ...],
                       out: Path) -> list[Path]:
        # The most active neurons of that sequence: 2 LIF and 3 ALIF (5 of one kind when it is alone).
        hidden, adaptive = self.spec.hidden, self.spec.adaptive
        activity = first["spikes"].sum(dim=0)
        lif = activity[:hidden - adaptive].argsort(descending=True, stable=True)
        alif = activity[hidden - adaptive:].argsort(descending=True, stable=True) + hidden - adaptive
        take = 2 if adaptive and hidden - adaptive else 5
        shown = [*lif[:take].tolist(), *alif[:5 - min(take, len(lif))].tolist()][:5]
        return [
            figures.raster(first["spikes"], f"recurrent spikes (LIF first, then ALIF), one test sequence ({label})",
                         out / "spike_raster.png",
                         input_spikes=first["inputs"] if self.spec.input == "delta" else None),
            figures.membrane_trace(first["potentials"][:, shown], first["spikes"][:, shown],
                                 first["thresholds"][:, shown],
                                 f"membrane potentials and thresholds, one test sequence ({label})",
                                 out / "membrane_trace.png"),
        ]
