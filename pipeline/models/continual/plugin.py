"""The continual learner's entry, its strategies and its task (the accuracy matrices of a stream)."""

from typing import Any, Protocol, runtime_checkable

from pipeline.capabilities import Classifier, Encoder
from pipeline.models import continual as spec
from pipeline.plugins import ModelEntry, Plugin, StrategyEntry, TaskEntry


@runtime_checkable
class ContinualLearner(Protocol):
    """A network trained on a stream of experiences: `build_stream(splits, seed)` makes the stream
    again, `matrix(split)` is its accuracy matrix (after training on experiences 0..i, on
    experience j), `summary(split)` the figures read off it, `seen(i)` the classes seen up to
    experience i, `memory()` what its strategy keeps."""

    def build_stream(self, splits: Any, seed: int) -> None: ...

    def matrix(self, split: str = "test") -> Any: ...

    def summary(self, split: str = "test") -> dict[str, float]: ...

    def seen(self, index: int) -> list[int]: ...

    def memory(self) -> dict[str, float]: ...


_STRATEGIES = "pipeline.models.continual.strategies"


def _stream(data: str) -> list[dict]:
    """A continual learner is read by its stream; probes of its features run when listed."""
    return [{"kind": "continual"}]


PLUGIN = Plugin(
    name="continual",
    summary="Continual learners over a stream of experiences (class-, task- or domain-incremental), from scratch or "
            "chained from a pretrained encoder, with the remedies for forgetting as strategies",
    models={
        "continual": ModelEntry(
            spec=spec.continual_spec,
            module="pipeline.models.continual.module:Continual",
            summary="Continual learner over a stream of experiences (class-, task- or domain-incremental), one "
                    "strategy of those registered (`pipeline models`); an MLP or an upstream spec's encoder",
            modalities=("image", "sequence"),
            provides=(Encoder, Classifier, ContinualLearner),
            takes_encoder=True,
            single_process=True,
            default_tasks=_stream,
        ),
    },
    tasks={
        "continual": TaskEntry(
            spec.ContinualTaskSpec, "pipeline.models.continual.task", (ContinualLearner,),
            "accuracy matrix, average accuracy, forgetting, transfer and memory of a continual learner"),
    },
    strategies={
        "naive": StrategyEntry(spec.Naive, f"{_STRATEGIES}.bounds:Naive",
                               "fine-tuning on each experience in turn (the lower bound); the labels trick"),
        "joint": StrategyEntry(spec.Joint, f"{_STRATEGIES}.bounds:Joint",
                               "one training on every experience at once (the upper bound)"),
        "cumulative": StrategyEntry(spec.Cumulative, f"{_STRATEGIES}.bounds:Cumulative",
                                    "each experience trained with every earlier one's examples"),
        "ewc": StrategyEntry(spec.EWC, f"{_STRATEGIES}.regularization:EWC",
                             "elastic weight consolidation (Kirkpatrick et al. 2017)"),
        "si": StrategyEntry(spec.SI, f"{_STRATEGIES}.regularization:SI",
                            "synaptic intelligence (Zenke et al. 2017)"),
        "lwf": StrategyEntry(spec.LwF, f"{_STRATEGIES}.regularization:LwF",
                             "learning without forgetting (Li & Hoiem 2017): distillation from the previous network"),
        "replay": StrategyEntry(spec.Replay, f"{_STRATEGIES}.rehearsal:Replay",
                                "experience replay from a buffer of raw examples"),
        "gdumb": StrategyEntry(spec.GDumb, f"{_STRATEGIES}.rehearsal:GDumb",
                               "GDumb (Prabhu et al. 2020): a class-balanced memory, retrained from scratch"),
        "ar1": StrategyEntry(spec.AR1, f"{_STRATEGIES}.ar1:AR1",
                             "latent replay / AR1* (Pellegrini et al. 2020): replay of activations at a layer"),
        "remind": StrategyEntry(spec.REMIND, f"{_STRATEGIES}.remind:REMIND",
                                "REMIND (Hayes et al. 2020): replay of product-quantised latents"),
        "energy": StrategyEntry(spec.EnergyBased, f"{_STRATEGIES}.energy:EnergyBased",
                                "an energy-based classifier (Li, Du & Mordatch 2022)"),
    },
    report="pipeline.models.continual.report:sections",
)
