"""Strategies that keep no examples: a penalty that holds the weights important to earlier
experiences near their values (online EWC, SI), or distillation of the earlier network's outputs
(LwF). What each keeps is a few copies of the network's parameters."""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap

from pipeline.data.datamodule import Fields, model_input
from pipeline.models.continual.strategies import Strategy, distillation, safe, stored_bytes
from pipeline.models.continual.strategies.penalties import ewc_penalty, si_importance, si_surrogate


def _log_likelihoods(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label | x) of each example (a masked class's -inf never multiplies anything)."""
    log_probs = torch.log_softmax(logits, dim=-1)
    chosen = torch.arange(log_probs.shape[-1], device=labels.device) == labels[..., None]
    return torch.where(chosen, log_probs, torch.zeros_like(log_probs)).sum(-1)


def _linear_owners(net, params: dict[str, torch.nn.Parameter]) -> dict[str, torch.nn.Linear] | None:
    """Parameter name -> its nn.Linear, where every trainable parameter belongs to one (an MLP):
    then the squared per-example gradients have a closed form. None otherwise."""
    owners = {}
    for module_name, module in net.named_modules():
        for kind, _ in module.named_parameters(recurse=False):
            name = f"{module_name}.{kind}"
            if name in params:
                if not isinstance(module, torch.nn.Linear):
                    return None
                owners[name] = module
    return owners if set(owners) == set(params) else None


def _linear_squares(net, owners: dict[str, torch.nn.Linear], x, y, t) -> dict[str, torch.Tensor]:
    """Sum over the batch of each example's squared gradient of its log-likelihood, for linear
    layers: example i's gradient of W is d_i a_i^T (d_i the gradient at the layer's output, a_i its
    input), so the sum of its squares is (d^2)^T (a^2), and the bias's is sum_i d_i^2."""
    inputs, outputs, hooks = {}, {}, []
    for module in set(owners.values()):
        def keep(layer, args, output, module=module):
            inputs[module] = args[0].detach()
            outputs[module] = output
        hooks.append(module.register_forward_hook(keep))
    try:
        with torch.enable_grad():
            total = _log_likelihoods(net(x, t), y).sum()
            total.backward(inputs=list(outputs.values()))
    finally:
        for hook in hooks:
            hook.remove()
    out = {}
    for name, module in owners.items():
        d = outputs[module].grad
        out[name] = d.pow(2).T @ inputs[module].pow(2) if name.endswith("weight") else d.pow(2).sum(0)
    return out


def _per_example_squares(net, params, x, y, t) -> dict[str, torch.Tensor]:
    """The same for any network: per-example gradients by torch.func, 32 examples at a time."""
    detached = {name: p.detach() for name, p in params.items()}
    buffers = {name: b for name, b in net.named_buffers() if not name.startswith("strategy.")}

    def log_likelihood(p, xi, yi, ti):
        return _log_likelihoods(functional_call(net, {**p, **buffers}, (xi[None], ti[None]))[0], yi)

    per_example = vmap(grad(log_likelihood), in_dims=(None, 0, 0, 0))
    out = {name: torch.zeros_like(p) for name, p in params.items()}
    for start in range(0, len(y), 32):
        grads = per_example(detached, x[start:start + 32], y[start:start + 32], t[start:start + 32])
        for name, g in grads.items():
            out[name] += g.pow(2).sum(0)
    return out


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
        params = {name: p for name, p in self.plastic().items() if self.kept("fisher_", name) is not None}
        return ewc_penalty(params.values(), [self.kept("anchor_", name) for name in params],
                           [self.kept("fisher_", name) for name in params], self.spec.ewc_lambda)

    def loss(self, batch: Fields) -> torch.Tensor:
        return super().loss(batch) + self.penalty()

    def fisher(self, fields: Fields) -> dict[str, torch.Tensor]:
        net = self.net
        count = len(fields["label"]) if self.spec.fisher_samples is None else \
            min(self.spec.fisher_samples, len(fields["label"]))
        generator = torch.Generator().manual_seed(int(net.seed) * 7919 + int(net.rows))
        chosen = torch.randperm(len(fields["label"]), generator=generator)[:count]
        params = self.plastic()
        linear = _linear_owners(net, params)
        total = {name: torch.zeros_like(p) for name, p in params.items()}
        was_training = net.training
        net.eval()
        device = net.head.weight.device
        for start in range(0, count, 256):
            index = chosen[start:start + 256]
            x = model_input(fields["input"][index].to(device))
            y, t = fields["label"][index].to(device), fields["task"][index].to(device)
            squares = _linear_squares(net, linear, x, y, t) if linear is not None else \
                _per_example_squares(net, params, x, y, t)
            for name, value in squares.items():
                total[name] += value
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
    Omega += max(omega, 0) / ((theta - theta*)^2 + xi) (a weight whose moves raised the loss on the
    whole gets no importance), then theta* = theta and omega = 0. Keeps Omega,
    omega, theta* and the weights before the last step."""

    def __init__(self, spec, net):
        super().__init__(spec, net)
        params = self.plastic()
        self.keep("importance_", {n: torch.zeros_like(p) for n, p in params.items()})
        self.keep("path_", {n: torch.zeros_like(p) for n, p in params.items()})
        self.keep("anchor_", params)
        self.keep("previous_", params)

    def loss(self, batch: Fields) -> torch.Tensor:
        params = self.plastic()
        penalty = si_surrogate(params.values(), [self.kept("anchor_", n) for n in params],
                               [self.kept("importance_", n) for n in params], self.spec.si_lambda)
        return super().loss(batch) + penalty

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
            self.kept("importance_", name).add_(si_importance(self.kept("path_", name), p, self.kept("anchor_", name),
                                                              self.spec.xi))
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
        state = {n: p for n, p in self.net.named_parameters() if n.startswith(("encoder.", "head."))}
        state.update({n: b for n, b in self.net.named_buffers() if n.startswith(("encoder.", "head."))})
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
        # Distilled on the logits unmasked: a task-incremental learner's are masked to the current
        # task, where the earlier classes have none. Each earlier task's classes are distilled on their
        # own there (a head per task); every class seen together otherwise.
        raw = self.net.head(self.net.encoder(model_input(batch["input"])))
        heads = [self.task_classes(t) for t in range(self.net.phase)] if self.net.spec.scenario.type == \
            "task_incremental" else [self.seen_classes]
        kept = sum(distillation(raw[:, classes], old[:, classes], self.spec.temperature) for classes in heads)
        return loss + self.spec.alpha * kept

    def task_classes(self, index: int) -> torch.Tensor:
        return self.net.task_classes[index]

    def end_experience(self, index: int) -> None:
        self.keep("old_", {n: v for n, v in self.network_state().items()})
        self.seen_classes[list(self.experiences[index].classes)] = True

    def memory(self) -> dict[str, float]:
        kept = sum(stored_bytes(b) for n, b in self._buffers.items() if n.startswith("old_"))
        return {"memory_samples": 0, "memory_bytes": kept}
