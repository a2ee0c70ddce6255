"""Gradient-based meta-learning as pure functions of tensors, on `torch.func` (functional_call,
grad, vjp, vmap): MAML's inner loop and meta-objective (Finn et al. 2017; first order: FOMAML),
Meta-SGD's learned per-weight step sizes (Li et al. 2017), ANIL's head-only inner loop (Raghu et
al. 2020), Reptile's direction (Nichol et al. 2018), iMAML's implicit hypergradient (Rajeswaran et
al. 2019) and the prototypical networks' logits (Snell et al. 2017). The Lightning module calls
them with its own network.

Weights are a dict name -> tensor (`Params`, e.g. `named_params(module)`); a task's loss is a
`LossFn`: (params, inputs [n, ...], targets [n] or [n, ...]) -> a scalar, the loss of one task's
examples, which the caller builds with `torch.func.functional_call` on its module (`loss_of`). A
meta-batch is tensors with a leading task axis: support_x [T, n_s, ...], support_y [T, n_s, ...],
query_x [T, n_q, ...], query_y [T, n_q, ...]. Every function over a meta-batch runs its tasks as
one `torch.func.vmap` over that axis (`vectorise=True`; the shared weights enter unbatched) or as
a Python loop over them (the way libraries that clone the module per task work), with the same
result.

Under vmap the network sees one task at a time, so each op must treat the examples of a task
alone. Batch norm must not track running statistics (`track_running_stats=False`, which
`loss_of` checks): it then normalises each task's support or query set on that set's own
statistics, in training and evaluation mode alike (transductive, as MAML's reference code), and
nothing is shared between the tasks of a meta-batch; an update of running statistics, an in-place
write to a buffer shared by the tasks, cannot be vmapped at all. Random ops (dropout) would need
vmap's `randomness` option, which these functions leave at its default (an error): a network with
dropout runs with `vectorise=False`.

Normalisation layers have a further catch (torch 2.x): under vmap, the second derivatives of the
fused batch, instance and layer norm kernels are wrong (MAML's second-order meta-gradient through
them differs from the per-task loop's, silently: by 1e-2 of its largest entry on the Conv-4 of
bench/meta_vmap.py; pytorch/functorch#534), and iMAML's Hessian-vector products through batch norm
fail ("accessing `data` under vmap transform"). `loss_of` therefore runs the module under
`CompositeNorms`, which computes F.batch_norm, F.instance_norm and F.layer_norm from plain ops
(var_mean, rsqrt, addcmul), whose derivatives of every order vmap correctly; a LossFn written by
hand should do the same (`with CompositeNorms(): ...`). Group norm's kernel is right as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vjp, vmap
from torch.overrides import TorchFunctionMode

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, torch.Tensor, torch.Tensor], torch.Tensor]
# What `adapted_losses` evaluates on a query set: a tensor of any shape, or a tuple of them.
QueryFn = Callable[[Params, torch.Tensor, torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]]


def named_params(module: nn.Module) -> Params:
    """The module's parameters by name, the tensors themselves (not detached), for
    `functional_call`: a meta-gradient computed from them lands in their `.grad`."""
    return dict(module.named_parameters())


def _channel_shape(input: torch.Tensor) -> list[int]:
    return [1, -1] + [1] * (input.dim() - 2)


def _normalise(input: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, eps: float, weight: torch.Tensor | None,
               bias: torch.Tensor | None, shape: list[int] | None) -> torch.Tensor:
    """(input - mean) / sqrt(var + eps) * weight + bias as input * scale + shift: one pass over
    the input (the statistics and the affine weights are small)."""
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * (weight if shape is None else weight.view(shape))
    shift = -mean * scale
    if bias is not None:
        shift = shift + (bias if shape is None else bias.view(shape))
    return torch.addcmul(shift, input, scale)


def _batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    shape = _channel_shape(input)
    if running_mean is None or running_var is None:  # batch statistics, whatever `training` says (as the module)
        var, mean = torch.var_mean(input, [0, *range(2, input.dim())], correction=0, keepdim=True)
    elif training:  # updates the running statistics in place: the fused kernel's business
        return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    else:
        mean, var = running_mean.view(shape), running_var.view(shape)
    return _normalise(input, mean, var, eps, weight, bias, shape)


def _instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                   momentum=0.1, eps=1e-5):
    if use_input_stats and running_mean is not None:  # updates the running statistics in place
        return F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps)
    shape = _channel_shape(input)
    if use_input_stats:
        var, mean = torch.var_mean(input, list(range(2, input.dim())), correction=0, keepdim=True)
    else:
        mean, var = running_mean.view(shape), running_var.view(shape)
    return _normalise(input, mean, var, eps, weight, bias, shape)


def _layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = list(range(input.dim() - len(normalized_shape), input.dim()))
    var, mean = torch.var_mean(input, dims, correction=0, keepdim=True)
    return _normalise(input, mean, var, eps, weight, bias, None)


class CompositeNorms(TorchFunctionMode):
    """Within it, F.batch_norm (on batch statistics, or on running ones in evaluation),
    F.instance_norm and F.layer_norm are computed from plain ops, whose derivatives of every order
    vmap correctly, unlike the fused kernels' (see the module's doc); everything else runs as it
    is. A running-statistics update is left to the fused kernel."""

    _COMPOSITES = {F.batch_norm: _batch_norm, F.instance_norm: _instance_norm, F.layer_norm: _layer_norm}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self._COMPOSITES.get(func, func)(*args, **(kwargs or {}))


NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm)


def has_norms(module: nn.Module) -> bool:
    """Whether the module has normalisation layers (whose fused kernels vmap gets wrong in second
    order: see the module's doc)."""
    return any(isinstance(layer, NORMS) for layer in module.modules())


def functional_forward(module: nn.Module, params: Params, inputs: torch.Tensor, *, composite: bool,
                       buffers: Params | None = None) -> torch.Tensor:
    """The module's output on the inputs with the given params (and buffers), through
    `functional_call`; under `CompositeNorms` if `composite` (whose dispatch costs time on every op,
    so a module without norms should not ask for it)."""
    weights = params if buffers is None else (params, buffers)
    if not composite:
        return functional_call(module, weights, (inputs,))
    with CompositeNorms():
        return functional_call(module, weights, (inputs,))


def loss_of(module: nn.Module, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy, *,
            composite_norms: bool = True) -> LossFn:
    """The `LossFn` of a module: loss(module's output on the inputs with the given params, targets),
    through `functional_call` with the module's buffers as they are (shared, never written), under
    `CompositeNorms` if the module has normalisation layers (unless not `composite_norms`: the fused
    kernels, faster but wrong in second order under vmap). `loss` may return anything of the outputs
    and targets, e.g. a tuple (loss, accuracy) for a query set. Raises ValueError if a batch norm
    tracks running statistics (see the module's doc)."""
    tracking = [name or type(module).__name__ for name, layer in module.named_modules()
                if isinstance(layer, nn.modules.batchnorm._NormBase) and layer.track_running_stats]
    if tracking:
        raise ValueError(f"{', '.join(tracking)}: batch norm tracking running statistics updates buffers shared by "
                         "every task (and cannot run under vmap); build it with track_running_stats=False, "
                         "which normalises each task's support or query set on its own statistics")
    buffers = dict(module.named_buffers())
    composite = composite_norms and has_norms(module)

    def task_loss(params: Params, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return loss(functional_forward(module, params, inputs, composite=composite, buffers=buffers), targets)

    return task_loss


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The share of rows of logits [n, classes] whose argmax is the target [n], in logits' dtype."""
    return (logits.argmax(-1) == targets).to(logits.dtype).mean()


def _detached(params: Params) -> Params:
    return {name: value.detach() for name, value in params.items()}


def _value_and_grad(loss_fn: LossFn, params: Params, inputs: torch.Tensor,
                    targets: torch.Tensor) -> tuple[torch.Tensor, Params]:
    """The loss and its gradient w.r.t. params without recording the backward pass for a higher
    derivative (torch.func.grad always does, for the transforms it may be nested in): for results
    that are detached anyway. Runs under vmap."""
    value, pullback = vjp(lambda weights: loss_fn(weights, inputs, targets), params)
    return value, pullback(torch.ones_like(value), create_graph=False)[0]


def adapt(loss_fn: LossFn, params: Params, inputs: torch.Tensor, targets: torch.Tensor, *, steps: int, lr: float,
          first_order: bool = False, lrs: Params | None = None, names: Collection[str] | None = None) -> Params:
    """MAML's inner loop on one task (Finn et al. 2017): `steps` steps of gradient descent on
    loss_fn(params, inputs, targets), p <- p - lr * dL/dp, or with Meta-SGD's learned step sizes
    (Li et al. 2017) p <- p - lrs[name] * dL/dp elementwise (each a tensor of p's shape, or any
    that broadcasts; then `lr` is unused). Only the params in `names` move (None: all): ANIL's
    inner loop (Raghu et al. 2020) passes the head's; the others are returned as they are, and the
    gradient is taken w.r.t. the moving ones only (the body's forward still runs at every step: for
    ANIL's full saving, embed once and adapt a LossFn of the head alone).

    The result is differentiable w.r.t. the initial params and lrs through every step (second
    order: d phi / d theta = prod_k (I - lr H_k), H_k the Hessian at step k); with `first_order`
    each inner gradient is computed on detached weights (FOMAML: d phi / d theta = I). Written
    with torch.func.grad, so that it runs inside vmap. steps=0 returns params."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, not {steps}")
    if names is not None and (unknown := set(names) - set(params)):
        raise ValueError(f"names not among the params: {sorted(unknown)}")
    moving = {name: value for name, value in params.items() if names is None or name in names}
    if lrs is not None and (missing := set(moving) - set(lrs)):
        raise ValueError(f"lrs has no learning rate for {sorted(missing)}")
    fixed = {name: value for name, value in params.items() if name not in moving}
    if first_order:
        fixed = _detached(fixed)

    def inner(weights: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn({**fixed, **weights}, x, y)

    gradient = grad(inner)
    for _ in range(steps):
        if first_order:  # constants: no graph for a higher derivative either
            grads = _value_and_grad(inner, _detached(moving), inputs, targets)[1]
        else:
            grads = gradient(moving, inputs, targets)
        moving = {name: value - (lr if lrs is None else lrs[name]) * grads[name] for name, value in moving.items()}
    return {name: moving.get(name, value) for name, value in params.items()}


def _stack(results: Sequence):
    """Per-task results (tensors, or tuples or dicts of them) stacked on a new leading axis."""
    first = results[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(results)
    if isinstance(first, dict):
        return {key: _stack([result[key] for result in results]) for key in first}
    return type(first)(_stack(list(parts)) for parts in zip(*results, strict=True))


def _over_tasks(task: Callable, batch: Sequence[torch.Tensor], vectorise: bool):
    """task(*one task's slices) for every task of the batch (a leading axis), stacked: one vmap, or
    a loop."""
    if vectorise:
        return vmap(task)(*batch)
    return _stack([task(*slices) for slices in zip(*batch, strict=True)])


def adapted_losses(loss_fn: LossFn, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                   query_x: torch.Tensor, query_y: torch.Tensor, *, steps: int, lr: float, first_order: bool = False,
                   lrs: Params | None = None, names: Collection[str] | None = None, vectorise: bool = True,
                   query_fn: QueryFn | None = None) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """MAML's meta-objective per task (Finn et al. 2017; Meta-SGD with `lrs`, ANIL with `names`,
    FOMAML with `first_order`, as in `adapt`): for each task t of the meta-batch, phi_t = `adapt`
    on its support set, then loss_fn(phi_t, query_x[t], query_y[t]); a tensor [T]. Its
    `.mean().backward()` leaves the meta-gradient in the params' (and lrs') `.grad`.

    `query_fn` (params, x, y) -> a tensor of any shape or a tuple of them replaces loss_fn on the
    query set, e.g. `loss_of(module, lambda z, y: (F.cross_entropy(z, y), accuracy(z, y)))` gives
    (losses [T], accuracies [T]) of the same adaptation. `vectorise`: one vmap over the tasks (the
    params shared, unbatched), or a loop over them; the same result."""
    evaluate = loss_fn if query_fn is None else query_fn

    def task(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor):
        adapted = adapt(loss_fn, params, sx, sy, steps=steps, lr=lr, first_order=first_order, lrs=lrs, names=names)
        return evaluate(adapted, qx, qy)

    return _over_tasks(task, (support_x, support_y, query_x, query_y), vectorise)


def reptile_direction(loss_fn: LossFn, params: Params, inputs: torch.Tensor, targets: torch.Tensor, *, steps: int,
                      lr: float, batch_size: int | None = None, vectorise: bool = True) -> Params:
    """Reptile's update direction (Nichol et al. 2018): for each task t (the leading axis of
    inputs and targets), phi_t after `steps` SGD steps of learning rate `lr` from the params on
    loss_fn (step k on the k-th minibatch of `batch_size` of the task's examples, in order,
    cycling; without batch_size on all of them), then the mean over tasks of (params - phi_t).
    Treated as a gradient, an outer SGD step of size eps is Reptile's theta <- theta + eps *
    mean_t(phi_t - theta). First order by construction: no graph is kept (the result is detached)."""
    theta = _detached(params)

    def task(x: torch.Tensor, y: torch.Tensor) -> Params:
        phi, count = theta, x.shape[0]
        batches = 1 if batch_size is None else -(-count // batch_size)
        for step in range(steps):
            if batch_size is None:
                xb, yb = x, y
            else:
                start = (step % batches) * batch_size
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            grads = _value_and_grad(loss_fn, phi, xb, yb)[1]
            phi = {name: (value - lr * grads[name]).detach() for name, value in phi.items()}
        return phi

    phis = _over_tasks(task, (inputs, targets), vectorise)
    return {name: (value - phis[name]).mean(0) for name, value in theta.items()}


def _dot(a: Params, b: Params) -> torch.Tensor:
    return sum((a[name] * b[name]).sum() for name in a)


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, 0 where the denominator is 0 (conjugate gradient once converged)."""
    return torch.where(denominator == 0, torch.zeros_like(numerator), numerator / denominator)


def conjugate_gradient(apply: Callable[[Params], Params], b: Params, iterations: int) -> Params:
    """`iterations` of conjugate gradient from 0 on A x = b, A symmetric positive definite given as
    its product x -> A x on Params (exact after as many iterations as the unknowns, in exact
    arithmetic). No early stop, so that it runs under vmap; a converged residual stays 0."""
    x = {name: torch.zeros_like(value) for name, value in b.items()}
    residual, direction = b, b
    norm = _dot(residual, residual)
    for _ in range(iterations):
        product = apply(direction)
        alpha = _divide(norm, _dot(direction, product))
        x = {name: x[name] + alpha * direction[name] for name in x}
        residual = {name: residual[name] - alpha * product[name] for name in x}
        new_norm = _dot(residual, residual)
        beta = _divide(new_norm, norm)
        direction = {name: residual[name] + beta * direction[name] for name in x}
        norm = new_norm
    return x


def proximal(loss_fn: LossFn, theta: Params, lam: float) -> LossFn:
    """iMAML's inner objective: loss_fn(phi, x, y) + lam/2 |phi - theta|^2."""

    def objective(phi: Params, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        distance = {name: phi[name] - theta[name] for name in phi}
        return loss_fn(phi, inputs, targets) + lam / 2 * _dot(distance, distance)

    return objective


def imaml_hypergradient(loss_fn: LossFn, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                        query_x: torch.Tensor, query_y: torch.Tensor, *, steps: int, lr: float, lam: float,
                        cg_steps: int, vectorise: bool = True) -> tuple[Params, torch.Tensor]:
    """iMAML's meta-gradient (Rajeswaran et al. 2019), for each task t: phi_t approximately
    argmin_phi L_s(phi) + lam/2 |phi - theta|^2 (L_s the support loss, theta the params) by `steps`
    gradient steps of `lr` from theta, none of them kept in a graph (memory independent of steps);
    g_t the query loss's gradient at phi_t; then v_t = (I + H_t/lam)^-1 g_t, H_t the support loss's
    Hessian at phi_t, by `cg_steps` iterations of conjugate gradient on Hessian-vector products
    (vjp of the support gradient, its graph built once per task). By the implicit function
    theorem, v_t is d L_q(phi*_t) / d theta at the exact proximal solution phi*_t.

    Returns (the mean over tasks of v_t, the query losses at phi_t [T]), both detached: the caller
    assigns the first to the params' `.grad`."""
    theta = _detached(params)
    inner = proximal(loss_fn, theta, lam)

    def task(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> tuple[Params, torch.Tensor]:
        phi = theta
        for _ in range(steps):
            grads = _value_and_grad(inner, phi, sx, sy)[1]
            phi = {name: (value - lr * grads[name]).detach() for name, value in phi.items()}
        query_loss, query_grad = _value_and_grad(loss_fn, phi, qx, qy)
        _, hessian_product = vjp(lambda weights: grad(loss_fn)(weights, sx, sy), phi)

        def system(vector: Params) -> Params:  # (I + H / lam) v; H symmetric, so the vjp is H v
            product = hessian_product(vector, create_graph=False)[0]
            return {name: vector[name] + product[name] / lam for name in vector}

        solution = conjugate_gradient(system, _detached(query_grad), cg_steps)
        return _detached(solution), query_loss.detach()

    solutions, losses = _over_tasks(task, (support_x, support_y, query_x, query_y), vectorise)
    return {name: value.mean(0) for name, value in solutions.items()}, losses


def prototype_logits(support_embeddings: torch.Tensor, support_labels: torch.Tensor,
                     query_embeddings: torch.Tensor, ways: int) -> torch.Tensor:
    """Prototypical networks' logits (Snell et al. 2017): the prototype of class c is the mean of
    the support embeddings [n_s, d] labelled c (labels [n_s] in 0..ways-1, each present), and a
    query's logit for c is minus its squared Euclidean distance to that prototype: [n_q, ways] for
    queries [n_q, d]. Leading task axes broadcast (support [T, n_s, d], labels [T, n_s] or [n_s],
    queries [T, n_q, d] -> [T, n_q, ways]); it also runs under vmap."""
    classes = torch.arange(ways, device=support_labels.device)
    members = (support_labels[..., :, None] == classes).to(support_embeddings.dtype)  # [..., n_s, ways]
    prototypes = members.transpose(-1, -2) @ support_embeddings / members.sum(-2)[..., :, None]  # [..., ways, d]
    return -((query_embeddings[..., :, None, :] - prototypes[..., None, :, :]) ** 2).sum(-1)
