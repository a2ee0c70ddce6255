"""A t-SNE picture (after PCA to 50 dimensions) of the same test examples under each feature set."""

from __future__ import annotations

import numpy as np

from pipeline import plots
from pipeline.evaluators.context import Context, TaskResult


def run(task, ctx: Context) -> TaskResult:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    seed = ctx.spec.seed
    labels = ctx.labels("test").numpy()
    chosen = np.random.default_rng(seed).permutation(len(labels))[:task.points]
    panels = {}
    for name in ctx.FEATURE_SETS:
        x = ctx.features(name)["test"].numpy()[chosen]
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        x = PCA(n_components=min(50, x.shape[1]), random_state=seed).fit_transform(x)
        panels[name.replace("_", " ")] = TSNE(n_components=2, init="pca", random_state=seed,
                                              perplexity=min(task.perplexity, len(x) - 1)).fit_transform(x)
    picture = plots.embeddings(panels, labels[chosen], ctx.splits.classes,
                               f"{ctx.spec.name}: t-SNE of test features", ctx.out / "embedding.png")
    return TaskResult({}, [picture])
