"""The meta-learners' entry: six kinds trained on episodes, the `few_shot` task, and the episodic
datasets they read."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pipeline.capabilities import Encoder
from pipeline.models.meta import KINDS, FewShotSpec
from pipeline.models.meta.datasets import DATASETS
from pipeline.plugins import ModelEntry, Plugin, TaskEntry


@runtime_checkable
class FewShotLearner(Protocol):
    """A model that learns a task from its support set: `evaluate(episodes, steps)` -> each task's
    query score after `steps` inner steps; `adapted()` the weights it adapts."""

    def evaluate(self, batch: Any, steps: int | None = None) -> Any: ...

    def adapted(self) -> Any: ...


_SUMMARIES = {
    "maml": "MAML (Finn et al. 2017): initial weights that a few gradient steps adapt to a task; second order, or "
            "first order (FOMAML)",
    "anil": "ANIL (Raghu et al. 2020): MAML with the inner loop on the head only",
    "meta_sgd": "Meta-SGD (Li et al. 2017): MAML with a learned inner learning rate per weight",
    "reptile": "Reptile (Nichol et al. 2018): weights moved towards those SGD reaches on each task",
    "imaml": "iMAML (Rajeswaran et al. 2019): proximal inner loop, implicit meta-gradient by conjugate gradient "
             "(memory independent of the inner steps)",
    "protonet": "Prototypical networks (Snell et al. 2017): queries classified by distance to class-mean embeddings",
}


def _default_tasks(data: str) -> list[dict]:
    return [{"kind": "few_shot"}]


PLUGIN = Plugin(
    name="meta",
    summary="Meta-learning on episodes of classes meta-training never sees: MAML, FOMAML, ANIL, Meta-SGD, Reptile, "
            "iMAML and prototypical networks, written on torch.func and vectorised over the tasks of a meta-batch",
    models={
        kind: ModelEntry(spec=spec, module="pipeline.models.meta.module:MetaLearner", summary=_SUMMARIES[kind],
                         modalities=("image", "sequence", "function"), provides=(Encoder, FewShotLearner),
                         default_tasks=_default_tasks)
        for kind, spec in KINDS.items()
    },
    tasks={
        "few_shot": TaskEntry(
            FewShotSpec, "pipeline.models.meta.few_shot", (FewShotLearner,),
            "N-way K-shot accuracy on meta-test classes with a 95% interval and against inner steps, beside from "
            "scratch, nearest centroid and a good embedding (functions: MSE against a network pretrained on all)",
            data="any"),
    },
    datasets=DATASETS,
    report="pipeline.models.meta.report:sections",
)
