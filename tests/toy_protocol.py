"""A two-experience training protocol for the tests: a toy family (a small MLP) that learns
classes 0-4, then 5-9, and measures every experience seen after each. Run as a script, it
registers the family and trains `spec` in the project $PIPELINE_ROOT; $KILL_AT_PHASE kills the
process (SIGKILL) as that phase starts, after the one before it finished."""

from __future__ import annotations

import math
import os
import signal
import sys
from typing import Literal

import torch
from torch import nn

from pipeline.spec.components import Strict

SPEC = """\
name: toy
data: {train_subset: 600, batch_size: 50}
model: {kind: toy_phases}
train: {max_epochs: 2, optimizer: {lr: 0.01}}
downstream: [{kind: network}]
"""


class ToySpec(Strict):
    kind: Literal["toy_phases"]


def build():
    from pipeline.data.datamodule import Splits, TensorDataModule
    from pipeline.models.base import Phase, Supervised

    class Experience(TensorDataModule):
        def setup(self, stage=None):
            if os.environ.get("KILL_AT_PHASE") == self.name:
                os.kill(os.getpid(), signal.SIGKILL)
            super().setup(stage)

    class Toy(Supervised):
        def __init__(self, spec, train, input_shape, num_classes):
            # Dropout draws random numbers: a resumed run matches only if each phase's random state does.
            encoder = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(math.prod(input_shape), 32), nn.ReLU())
            encoder.out_dim = 32
            super().__init__(encoder, train)
            self.head = nn.Linear(32, num_classes)

        def classify(self, inputs):
            return self.head(self.encoder(inputs))

        def phases(self, spec, splits):
            self.experiences = []
            phases = []
            for index, classes in enumerate(((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))):
                def part(fields, classes=classes):
                    keep = torch.isin(fields["label"], torch.tensor(classes))
                    return {name: values[keep] for name, values in fields.items()}

                subset = Splits(part(splits.train), part(splits.val), part(splits.test), splits.classes)
                self.experiences.append(subset)
                data = Experience(spec.data, spec.seed, subset)
                data.name = f"experience{index}"
                phases.append(Phase(data.name, data, spec.train.max_epochs))
            return phases

        @torch.no_grad()
        def after_phase(self, index, phase):
            from pipeline.data.datamodule import model_input

            out = {}
            for seen, subset in enumerate(self.experiences[: index + 1]):
                inputs, labels = subset.pair("test")
                predicted = self.classify(model_input(inputs)).argmax(1)
                out[f"experience_accuracy/{seen}"] = (predicted == labels).float().mean().item()
            return out

    return Toy


def main() -> None:
    from pipeline import plugins
    from pipeline.capabilities import Classifier, Encoder

    plugins.register(plugins.Plugin("toy_protocol", "a toy family of two experiences", models={
        "toy_phases": plugins.ModelEntry(spec=ToySpec, module="tests.toy_protocol:TOY", summary="two experiences",
                                         modalities=("image",), provides=(Encoder, Classifier))}))
    global TOY
    TOY = build()
    from pipeline import stages
    from pipeline.spec.load import load_text

    spec = load_text(SPEC, "toy.yaml")
    stages.pretrain(spec, auto_resume="--auto-resume" in sys.argv)


if __name__ == "__main__":
    sys.modules["tests.toy_protocol"] = sys.modules["__main__"]
    main()
