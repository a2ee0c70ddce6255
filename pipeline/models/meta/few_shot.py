"""The downstream task `few_shot`: how well a meta-learner learns classes it never saw, from a few
examples each.

Classification: N-way episodes of the meta-test classes at each shot count, the same fixed
episodes for every model and seed (drawn from `task.seed`), scored by mean query accuracy with a
95% confidence interval (1.96 standard errors over episodes), and against the number of inner
steps. Baselines on the same episodes:
- from scratch: the same network, freshly initialised, trained by Adam on the support set alone
  (its learning rate chosen on meta-validation episodes);
- nearest centroid on the raw input: each query to the class whose mean support input is nearest;
- a good embedding (Tian et al. 2020): the same body trained supervised on all meta-training
  classes at once (with batch norm's running statistics, its best), then a logistic-regression head
  fitted on each support set's L2-normalised features.
Every figure is also given on meta-validation episodes (what settings are chosen on).

Functions (regression): the query's squared error after each number of inner steps, beside the
same network trained on all training functions at once and then fine-tuned on the support points
by the same SGD (its learning rate chosen on meta-validation functions for each number of steps):
MAML's sinusoid result is
that the meta-learned start fits a new function in one step and the pretrained one does not.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from pipeline import plots
from pipeline.data.datamodule import model_input
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.models.meta import algorithms, episodes
from pipeline.models.meta.module import MetaLearner, build_body

CHUNK = 32
"""Episodes vectorised at once."""
VAL_EPISODES = 100
"""Meta-validation episodes per figure and per setting tried (at most the task's episode count)."""
PICTURED = 3
"""Functions drawn with their adapted curves."""


def interval(scores: torch.Tensor) -> float:
    """Half-width of the 95% confidence interval of the mean of per-episode scores (1.96 standard
    errors, the sample standard deviation over the episodes)."""
    n = len(scores)
    return float(1.96 * scores.double().std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")


def _per_chunk(score, batch: episodes.Episode) -> torch.Tensor:
    return torch.cat([score(chunk) for chunk in episodes.chunks(batch, CHUNK)])


# --- baselines on each episode ---

def adam_fit(loss_fn, params: dict, inputs, targets, steps: int, lr: float, weight_decay: float = 0.0) -> dict:
    """`steps` full-batch Adam steps on one task (a functional Adam, vectorisable with vmap)."""
    m = {n: torch.zeros_like(p) for n, p in params.items()}
    v = {n: torch.zeros_like(p) for n, p in params.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        g = grad(loss_fn)(params, inputs, targets)
        for n in params:
            gn = g[n] + weight_decay * params[n]
            m[n] = beta1 * m[n] + (1 - beta1) * gn
            v[n] = beta2 * v[n] + (1 - beta2) * gn * gn
            step = lr * (m[n] / (1 - beta1**t)) / ((v[n] / (1 - beta2**t)).sqrt() + eps)
            params = {**params, n: params[n] - step}
    return params


class Scratch:
    """The network trained from its initial weights on the support set alone."""

    def __init__(self, initial: MetaLearner, ways: int, seed: int):
        torch.manual_seed(seed)
        self.net = nn.Sequential(copy.deepcopy(initial.encoder), nn.Linear(initial.encoder.out_dim, ways))
        self.params = {n: p.detach() for n, p in self.net.named_parameters()}

    def loss(self, params, x, y):
        return F.cross_entropy(functional_call(self.net, params, (x,)), y)

    def scores(self, batch: episodes.Episode, steps: int, lr: float) -> torch.Tensor:
        def one(sx, sy, qx, qy):
            fitted = adam_fit(self.loss, self.params, sx, sy, steps, lr)
            return (functional_call(self.net, fitted, (qx,)).argmax(-1) == qy).float().mean()

        with torch.enable_grad(), torch.inference_mode(False):
            return _per_chunk(lambda c: vmap(one)(c["support_x"], c["support_y"], c["query_x"], c["query_y"]),
                              batch).detach()


def centroid_scores(batch: episodes.Episode) -> torch.Tensor:
    """Nearest class mean of the raw inputs."""
    ways = int(batch["support_y"].max()) + 1
    logits = vmap(lambda s, y, q: algorithms.prototype_logits(s, y, q, ways))(
        batch["support_x"].flatten(2), batch["support_y"], batch["query_x"].flatten(2))
    return (logits.argmax(-1) == batch["query_y"]).float().mean(-1)


class GoodEmbedding:
    """The body trained supervised on all meta-training classes (batch norm with running
    statistics, read in eval mode), and a logistic-regression head per support set."""

    HEAD_STEPS, HEAD_LR, HEAD_DECAY = 100, 0.1, 5e-4

    def __init__(self, spec, input_shape, pool: episodes.ClassPool, epochs: int, seed: int, device: str):
        torch.manual_seed(seed)
        body = build_body(spec, input_shape, running_stats=True)
        index = np.concatenate(pool.members)
        labels = torch.as_tensor(np.concatenate([np.full(len(m), i) for i, m in enumerate(pool.members)]))
        net = nn.Sequential(body, nn.Linear(body.out_dim, len(pool.members))).to(device)
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(seed)
        net.train()
        with torch.enable_grad(), torch.inference_mode(False):
            for _ in range(epochs):
                order = torch.randperm(len(index), generator=generator)
                for start in range(0, len(order) - 1, 128):
                    chosen = order[start:start + 128]
                    inputs = model_input(pool.inputs[index[chosen.numpy()]]).to(device)
                    loss = F.cross_entropy(net(inputs), labels[chosen].to(device))
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
        self.body = body.eval()
        self.device = device

    def _head_loss(self, params, features, labels):
        return F.cross_entropy(features @ params["weight"].T + params["bias"], labels)

    def scores(self, batch: episodes.Episode) -> torch.Tensor:
        ways = int(batch["support_y"].max()) + 1

        def embed(inputs):  # [T, n, ...] -> [T, n, d], L2-normalised
            with torch.no_grad():
                flat = self.body(inputs.flatten(0, 1).to(self.device)).cpu()
            return F.normalize(flat, dim=-1).unflatten(0, inputs.shape[:2])

        def one(support, sy, query, qy):
            start = {"weight": torch.zeros(ways, support.shape[-1]), "bias": torch.zeros(ways)}
            head = adam_fit(self._head_loss, start, support, sy, self.HEAD_STEPS, self.HEAD_LR, self.HEAD_DECAY)
            return ((query @ head["weight"].T + head["bias"]).argmax(-1) == qy).float().mean()

        def chunk(c):
            return vmap(one)(embed(c["support_x"]), c["support_y"], embed(c["query_x"]), c["query_y"])

        with torch.enable_grad(), torch.inference_mode(False):
            return _per_chunk(chunk, batch).detach()


# --- the task ---

def run(task, ctx: Context) -> TaskResult:
    model: MetaLearner = ctx.trained.cpu()
    spec = model.spec
    e = spec.episodes
    pools = episodes.pools(ctx.splits, e.val_fraction, e.ways, model.regression)
    if model.regression:
        return _functions(task, ctx, model, pools)
    return _classes(task, ctx, model, pools)


def _draw(pool, task, stream: str, count: int, ways: int, shots: int, queries: int) -> episodes.Episode:
    return episodes.draw(pool, task.seed, stream, range(count), ways, shots, queries, salt=shots)


def _classes(task, ctx: Context, model: MetaLearner, pools: episodes.Pools) -> TaskResult:
    spec, e = model.spec, model.spec.episodes
    n_val = min(task.episodes, VAL_EPISODES)
    metrics: dict[str, float] = {}
    curves: dict[str, list[tuple[float, float]]] = {}
    headline = None
    embedding = GoodEmbedding(spec, tuple(ctx.splits.input_shape), pools.train, task.embedding_epochs, ctx.spec.seed,
                              "cpu")
    scratch = Scratch(ctx.initial.cpu(), e.ways, ctx.spec.seed)
    for shots in task.shots:
        test = _draw(pools.test, task, "test", task.episodes, e.ways, shots, e.queries)
        val = _draw(pools.val, task, "val", n_val, e.ways, shots, e.queries)
        key = f"{shots}shot"
        scores = {"meta": _per_chunk(model.evaluate, test), "meta_val": _per_chunk(model.evaluate, val)}
        if spec.adapts:
            series = []
            for steps in task.steps:
                per_episode = scores["meta"] if steps == spec.eval_inner_steps else \
                    _per_chunk(lambda c, s=steps: model.evaluate(c, s), test)
                value = float(per_episode.mean())
                metrics[f"{key}/accuracy_steps_{steps}"] = value
                ctx.log_series({f"few_shot/{key}_accuracy_vs_steps": value}, step=steps)
                series.append((steps, value))
            curves[f"{e.ways}-way {shots}-shot"] = series
        lr_scores = {lr: scratch.scores(val, task.scratch_steps, lr).mean().item() for lr in task.scratch_lrs}
        best_lr = max(lr_scores, key=lr_scores.get)
        scores["scratch"] = scratch.scores(test, task.scratch_steps, best_lr)
        scores["centroid"], scores["centroid_val"] = centroid_scores(test), centroid_scores(val)
        scores["embedding"], scores["embedding_val"] = embedding.scores(test), embedding.scores(val)
        metrics.update({
            f"{key}/accuracy": scores["meta"].mean().item(), f"{key}/ci95": interval(scores["meta"]),
            f"{key}/val_accuracy": scores["meta_val"].mean().item(),
            f"{key}/scratch": scores["scratch"].mean().item(), f"{key}/scratch_ci95": interval(scores["scratch"]),
            f"{key}/scratch_val": lr_scores[best_lr], f"{key}/scratch_lr": best_lr,
            f"{key}/centroid": scores["centroid"].mean().item(), f"{key}/centroid_ci95": interval(scores["centroid"]),
            f"{key}/centroid_val": scores["centroid_val"].mean().item(),
            f"{key}/embedding": scores["embedding"].mean().item(),
            f"{key}/embedding_ci95": interval(scores["embedding"]),
            f"{key}/embedding_val": scores["embedding_val"].mean().item(),
        })
        if headline is None:
            names = {"from scratch": "scratch", "nearest centroid (raw input)": "centroid",
                     "good embedding (supervised body)": "embedding"}
            headline = Headline(
                f"{e.ways}-way {shots}-shot accuracy (meta-test classes, {task.episodes} episodes, "
                f"+/-{metrics[f'{key}/ci95']:.1%})",
                metrics[f"{key}/accuracy"], {label: metrics[f"{key}/{name}"] for label, name in names.items()},
                validation=metrics[f"{key}/val_accuracy"],
                baselines_validation={label: metrics[f"{key}/{name}_val"] for label, name in names.items()})
    pictures = []
    if curves:
        pictures.append(plots.lines(curves, f"{ctx.spec.name}: meta-test accuracy against inner steps", "inner steps",
                                    "query accuracy", ctx.out / "few_shot_steps.png"))
    return TaskResult(metrics, pictures, headline)


# --- functions ---

class Pretrained:
    """The network trained on all training functions at once (Adam on the squared error of
    batches of `FUNCTIONS` functions' points, an epoch a pass over the functions), then fine-tuned
    on a task's support points by SGD."""

    FUNCTIONS = 25

    def __init__(self, initial: MetaLearner, pool: episodes.FunctionPool, epochs: int, seed: int):
        torch.manual_seed(seed)
        self.net = copy.deepcopy(initial)
        optimiser = torch.optim.Adam(self.net.adapted().values(), lr=1e-3)
        generator = np.random.default_rng(seed)
        points = model_input(pool.inputs[pool.functions]).transpose(1, 2)  # [N, P, C]
        values = model_input(pool.targets[pool.functions]).transpose(1, 2)
        with torch.enable_grad(), torch.inference_mode(False):
            for _ in range(epochs):
                order = torch.as_tensor(generator.permutation(len(points)))
                for start in range(0, len(order), self.FUNCTIONS):
                    chosen = order[start:start + self.FUNCTIONS]
                    loss = F.mse_loss(self.net(points[chosen].flatten(0, 1)), values[chosen].flatten(0, 1))
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
        self.params = {n: p.detach() for n, p in self.net.adapted().items()}

    def scores(self, batch: episodes.Episode, steps: int, lr: float) -> torch.Tensor:
        with torch.enable_grad(), torch.inference_mode(False):
            return _per_chunk(lambda c: algorithms.adapted_losses(
                self.net.loss, self.params, c["support_x"], c["support_y"], c["query_x"], c["query_y"], steps=steps,
                lr=lr, first_order=True, query_fn=self.net.score), batch).detach()


def _functions(task, ctx: Context, model: MetaLearner, pools: episodes.Pools) -> TaskResult:
    spec, e = model.spec, model.spec.episodes
    n_val = min(task.episodes, VAL_EPISODES)
    pretrained = Pretrained(ctx.initial.cpu(), pools.train, task.embedding_epochs, ctx.spec.seed)
    most = max(task.steps)
    metrics: dict[str, float] = {}
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    headline = None
    for shots in task.shots:
        key = f"{shots}shot"
        test = _draw(pools.test, task, "test", task.episodes, 1, shots, e.queries)
        val = _draw(pools.val, task, "val", n_val, 1, shots, e.queries)
        rates = sorted({*task.scratch_lrs, spec.inner_lr})
        best_lr = {}  # the pretrained network's fine-tuning rate, chosen on meta-validation per step count
        for steps in task.steps:
            tried = {lr: pretrained.scores(val, steps, lr).mean().item() for lr in (rates if steps else rates[:1])}
            best_lr[steps] = min(tried, key=tried.get)
            metrics[f"{key}/pretrained_lr_steps_{steps}"] = best_lr[steps]
            metrics[f"{key}/val_pretrained_mse_steps_{steps}"] = tried[best_lr[steps]]
        lines: dict[str, list[tuple[float, float]]] = {"meta-learned": [], "pretrained on all functions": []}
        for steps in task.steps:
            for label, name, score in (("meta-learned", "mse", lambda c, s=steps: model.evaluate(c, s)),
                                       ("pretrained on all functions", "pretrained_mse",
                                        lambda c, s=steps, lr=best_lr[steps]: pretrained.scores(c, s, lr))):
                values = _per_chunk(score, test)
                metrics[f"{key}/{name}_steps_{steps}"] = values.mean().item()
                metrics[f"{key}/{name}_steps_{steps}_ci95"] = interval(values)
                lines[label].append((steps, values.mean().item()))
            ctx.log_series({f"few_shot/{key}_mse_vs_steps": metrics[f"{key}/mse_steps_{steps}"]}, step=steps)
        one = 1 if 1 in task.steps else task.steps[0]
        metrics[f"{key}/val_mse_steps_{one}"] = _per_chunk(lambda c, s=one: model.evaluate(c, s), val).mean().item()
        panels[f"K = {shots}"] = lines
        if headline is None:
            headline = Headline(
                f"query MSE after {one} step{'s' if one != 1 else ''}, K = {shots} ({task.episodes} functions)",
                metrics[f"{key}/mse_steps_{one}"],
                {f"pretrained on all functions, {one} step{'s' if one != 1 else ''}":
                    metrics[f"{key}/pretrained_mse_steps_{one}"],
                 f"pretrained, {most} steps": metrics[f"{key}/pretrained_mse_steps_{most}"]},
                unit="MSE", validation=metrics[f"{key}/val_mse_steps_{one}"],
                baselines_validation={f"pretrained on all functions, {one} step{'s' if one != 1 else ''}":
                                      metrics[f"{key}/val_pretrained_mse_steps_{one}"]})
        if shots == task.shots[0]:
            curves_png = _draw_functions(ctx, model, pretrained, test, shots, best_lr[most], one, most)
    pictures = [plots.line_panels(panels, f"{ctx.spec.name}: query MSE against inner steps", "inner steps",
                                  ctx.out / "few_shot_steps.png"), curves_png]
    return TaskResult(metrics, pictures, headline)


def _draw_functions(ctx: Context, model: MetaLearner, pretrained: Pretrained, test: episodes.Episode, shots: int,
                    lr: float, one: int, most: int):
    """The first test functions: the truth, the support points, and each network's fit after
    `one` and `most` steps."""
    import matplotlib.pyplot as plt

    amplitude, phase = ctx.splits.test.get("amplitude"), ctx.splits.test.get("phase")
    grid = torch.linspace(-5, 5, 200)[:, None]
    fig, axes = plt.subplots(1, PICTURED, figsize=(4 * PICTURED, 3.2), squeeze=False)
    with torch.enable_grad(), torch.inference_mode(False):
        for i, ax in enumerate(axes[0]):
            sx, sy = test["support_x"][i], test["support_y"][i]
            if amplitude is not None and phase is not None:
                f = int(test["function"][i])
                truth = float(amplitude[f]) * torch.sin(grid[:, 0] - float(phase[f]))
                ax.plot(grid[:, 0], truth, color="black", lw=1.5, label="true function")
            for label, net, params, rate, steps, style in (
                    ("meta-learned", model, model.adapted(), model.spec.inner_lr, one, "-"),
                    ("meta-learned", model, model.adapted(), model.spec.inner_lr, most, "--"),
                    ("pretrained", pretrained.net, pretrained.params, lr, most, ":")):
                start = {n: p.detach() for n, p in params.items()}
                lrs = model.learning_rates() if net is model else None
                lrs = {n: v.detach() for n, v in lrs.items()} if lrs else None
                fitted = algorithms.adapt(net.loss, start, sx, sy, steps=steps, lr=rate, first_order=True, lrs=lrs,
                                          names=net.moving())
                with torch.no_grad():
                    ax.plot(grid[:, 0], functional_call(net, fitted, (grid,))[:, 0], style, label=f"{label}, {steps} "
                            f"step{'s' if steps != 1 else ''}")
            ax.scatter(sx[:, 0], sy[:, 0], color="red", zorder=3, label=f"{shots} support points")
            ax.set_title(f"test function {i}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{ctx.spec.name}: adapted to new functions", fontsize=10)
    return plots.save(fig, ctx.out / "few_shot_functions.png")
