"""The toy family's entry: what it is, the data it takes, and what its trained model provides,
among which the toy task's own capability (`Scorer`, imported from that plugin)."""

from toy_task import Scorer

from pipeline.capabilities import Classifier, Encoder
from pipeline.plugins import ModelEntry, Plugin
from toy_family import ToyMLPSpec

PLUGIN = Plugin(
    name="toy_family",
    summary="A toy model family: an MLP on flattened inputs",
    models={
        "toy_mlp": ModelEntry(spec=ToyMLPSpec, module="toy_family.module:ToyMLP",
                              summary="a supervised MLP on flattened inputs", modalities=("sequence", "vector"),
                              provides=(Encoder, Classifier, Scorer)),
    },
)
