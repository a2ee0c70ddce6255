"""Strategies that keep no examples: a penalty that holds the weights important to earlier
experiences near their values (online EWC, SI), or distillation of the earlier network's outputs
(LwF). What each keeps is a few copies of the network's parameters."""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap

from pipeline.data.datamodule import Fields, model_input
from pipeline.models.continual.strategies import Strategy, distillation, safe, stored_bytes


class _ParameterStrategy(Strategy):
    """Keeps per-parameter tensors (an anchor, importances) as buffers named after the network's
    parameters (the encoder's and the head's; never its own)."""

    def plastic(self) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in self.net.named_parameters()
                if not name.startswith("strategy.") and p.requires_grad}

    def keep(self, prefix: str, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            self.register_buffer(f"{prefix}{safe(name)}", value.detach().clone())

    def kept(self, prefix: str, name: str) -> torch.Tensor | None:
        return self._buffers.get(f"{prefix}{safe(name)}")

    def kept_bytes(self) -> int:
        return sum(stored_bytes(b) for b in self._buffers.values() if b is not None)

    def memory(self) -> dict[str, float]:
        return {"memory_samples": 0, "memory_bytes": self.kept_bytes()}


def _declare(strategy: Strategy, prefix: str, names) -> None:
    """Buffers filled later (after the first experience), declared empty now so that a saved
    network loads into a freshly built one."""
    for name in names:
        strategy.register_buffer(f"{prefix}{safe(name)}", None)


class EWC(_ParameterStrategy):
    """Online EWC. The Fisher is the empirical one: the mean over the experience's examples of each
    example's squared gradient of its log-likelihood (per-example gradients by torch.func, the
    network in eval mode), with the true labels. Keeps the running Fisher and the anchor weights."""

    def __init__(self, spec, net):
        super().__init__(spec, net)
        self.register_buffer("consolidated", torch.zeros((), dtype=torch.bool))
        for prefix in ("fisher_", "anchor_"):
            _declare(self, prefix, self.plastic())

    def penalty(self) -> torch.Tensor:
        if not bool(self.consolidated):
            return torch.zeros((), device=self.net.head.weight.device)
        total = 0.0
        for name, p in self.plastic().items():
            fisher, anchor = self.kept("fisher_", name), self.kept("anchor_", name)
            if fisher is not None:
                total = total + (fisher * (p - anchor) ** 2).sum()
        return 0.5 * self.spec.ewc_lambda * total

    def loss(self, batch: Fields) -> torch.Tensor:
        return super().loss(batch) + self.penalty()

    def fisher(self, fields: Fields) -> dict[str, torch.Tensor]:
        net = self.net
        params = {name: p.detach() for name, p in self.plastic().items()}
        buffers = {name: b for name, b in net.named_buffers() if not name.startswith("strategy.")}
        count = len(fields["label"]) if self.spec.fisher_samples is None else \
            min(self.spec.fisher_samples, len(fields["label"]))
        generator = torch.Generator().manual_seed(int(net.seed) * 7919 + int(net.rows))
        chosen = torch.randperm(len(fields["label"]), generator=generator)[:count]

        def log_likelihood(p, x, y, t):
            logits = functional_call(net, {**p, **buffers}, (x[None], t[None]))
            log_probs = torch.log_softmax(logits[0], dim=0)
            return (log_probs * (torch.arange(len(log_probs), device=y.device) == y)).sum()

        per_example = vmap(grad(log_likelihood), in_dims=(None, 0, 0, 0))
        total = {name: torch.zeros_like(p) for name, p in params.items()}
        was_training = net.training
        net.eval()
        device = net.head.weight.device
        for start in range(0, count, 256):
            index = chosen[start:start + 256]
            x = model_input(fields["input"][index].to(device))
            grads = per_example(params, x, fields["label"][index].to(device), fields["task"][index].to(device))
            for name, g in grads.items():
                total[name] += (g**2).sum(dim=0)
        net.train(was_training)
        return {name: value / max(count, 1) for name, value in total.items()}

    def end_experience(self, index: int) -> None:
        current = self.fisher(self.experiences[index].train)
        for name, value in current.items():
            before = self.kept("fisher_", name)
            if before is not None:
                value = self.spec.decay * before + value
            self.keep("fisher_", {name: value})
        self.keep("anchor_", {name: p for name, p in self.plastic().items()})
        self.consolidated.fill_(True)


class SI(_ParameterStrategy):
    """Synaptic intelligence. Per step, omega += -g * (theta - theta_before_the_step), g the
    step's gradient (of the whole loss, penalty included); at the end of an experience,
    Omega += omega / ((theta - theta*)^2 + xi), then theta* = theta and omega = 0. Keeps Omega,
    omega, theta* and the weights before the last step."""

    def __init__(self, spec, net):
        super().__init__(spec, net)
        params = self.plastic()
        self.keep("importance_", {n: torch.zeros_like(p) for n, p in params.items()})
        self.keep("path_", {n: torch.zeros_like(p) for n, p in params.items()})
        self.keep("anchor_", params)
        self.keep("previous_", params)

    def loss(self, batch: Fields) -> torch.Tensor:
        penalty = sum((self.kept("importance_", n) * (p - self.kept("anchor_", n)) ** 2).sum()
                      for n, p in self.plastic().items())
        return super().loss(batch) + self.spec.si_lambda * penalty

    @torch.no_grad()
    def after_step(self) -> None:
        for name, p in self.plastic().items():
            previous = self.kept("previous_", name)
            if p.grad is not None:
                self.kept("path_", name).add_(-p.grad * (p - previous))
            previous.copy_(p)

    @torch.no_grad()
    def end_experience(self, index: int) -> None:
        for name, p in self.plastic().items():
            change = (p - self.kept("anchor_", name)) ** 2
            self.kept("importance_", name).add_(self.kept("path_", name).clamp(min=0) / (change + self.spec.xi))
            self.kept("path_", name).zero_()
            self.kept("anchor_", name).copy_(p)
            self.kept("previous_", name).copy_(p)


class LwF(_ParameterStrategy):
    """Learning without forgetting. After each experience the network's parameters and buffers are
    kept; on the next experiences the loss adds alpha * T^2 * KL(old || new) between the kept
    network's and the network's softened logits over the classes seen before."""

    def __init__(self, spec, net):
        super().__init__(spec, net)
        self.register_buffer("seen_classes", torch.zeros(net.num_classes, dtype=torch.bool))
        _declare(self, "old_", self.network_state())

    def network_state(self) -> dict[str, torch.Tensor]:
        state = {n: p for n, p in self.net.named_parameters() if not n.startswith("strategy.")}
        state.update({n: b for n, b in self.net.named_buffers() if not n.startswith("strategy.")})
        return state

    def loss(self, batch: Fields) -> torch.Tensor:
        logits = self.net.logits(batch["input"], batch.get("task"))
        loss = self.net.cross_entropy(logits, batch)
        if not bool(self.seen_classes.any()):
            return loss
        old_state = {name: self.kept("old_", name) for name in self.network_state()}
        with torch.no_grad():
            was_training = self.net.training
            self.net.eval()
            old = functional_call(self.net, old_state, (batch["input"],))
            self.net.train(was_training)
        seen = self.seen_classes
        return loss + self.spec.alpha * distillation(logits[:, seen], old[:, seen], self.spec.temperature)

    def end_experience(self, index: int) -> None:
        self.keep("old_", {n: v for n, v in self.network_state().items()})
        self.seen_classes[list(self.experiences[index].classes)] = True

    def memory(self) -> dict[str, float]:
        kept = sum(stored_bytes(b) for n, b in self._buffers.items() if n.startswith("old_"))
        return {"memory_samples": 0, "memory_bytes": kept}
