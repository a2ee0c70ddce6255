"""A spec that trains on a dataset another spec's stage wrote: a tiny SwAV (`producer`) writes
its encoder's features (export_features); a toy family taking vectors (`on_features`, an MLP)
trains and is evaluated on them. Run as a script in the project $PIPELINE_ROOT (Fashion-MNIST
fetched); prints the consumer's evaluate.json. With --tamper, alters one written file first."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Literal

from torch import nn

from pipeline.spec.components import Strict

PRODUCER = """\
name: producer
data: {train_subset: 256, probe_subset: 1000, batch_size: 64}
model:
  kind: swav
  prototypes: 10
  projection_hidden_dim: 32
  projection_dim: 16
  freeze_prototypes_steps: 0
  backbone: {widths: [8, 16]}
  multicrop: {small_crops: 1}
train: {max_epochs: 1}
downstream: [{kind: export_features}]
"""

CONSUMER = """\
name: on_features
data: {dataset: upstream, train_subset: 3000, batch_size: 100}
upstream: {data: producer}
model: {kind: toy_vector}
train: {max_epochs: 10, optimizer: {lr: 0.01}}
downstream: [{kind: network}, {kind: linear_probe, weight_decays: [0.001], max_iter: 50}]
"""


class ToyVectorSpec(Strict):
    kind: Literal["toy_vector"]


def build():
    from pipeline.models.base import Supervised

    class ToyVector(Supervised):
        def __init__(self, spec, train, input_shape, num_classes):
            [dimensions] = input_shape
            encoder = nn.Sequential(nn.Linear(dimensions, 64), nn.ReLU())
            encoder.out_dim = 64
            super().__init__(encoder, train)
            self.head = nn.Linear(64, num_classes)

        def classify(self, inputs):
            return self.head(self.encoder(inputs))

    return ToyVector


def main() -> None:
    from pipeline import plugins
    from pipeline.capabilities import Classifier, Encoder

    plugins.register(plugins.Plugin("toy_consumer", "a toy family on vectors", models={
        "toy_vector": plugins.ModelEntry(spec=ToyVectorSpec, module="tests.toy_consumer:TOY",
                                         summary="an MLP on vectors", modalities=("vector",),
                                         provides=(Encoder, Classifier))}))
    global TOY
    TOY = build()
    from pipeline import stages
    from pipeline.spec.load import load

    root = Path(os.environ["PIPELINE_ROOT"])
    paths = {}
    for name, text in (("producer", PRODUCER), ("on_features", CONSUMER)):
        paths[name] = root / "specs" / f"{name}.yaml"
        paths[name].write_text(text)
    producer = load(paths["producer"])
    stages.pretrain(producer, paths["producer"])
    stages.evaluate(producer, paths["producer"])
    if "--tamper" in sys.argv:
        written = root / "artifacts" / "producer" / "evaluate" / "dataset" / "train.input.npy"
        data = bytearray(written.read_bytes())
        data[-1] ^= 0xFF
        written.write_bytes(bytes(data))
    consumer = load(paths["on_features"])
    stages.pretrain(consumer, paths["on_features"])
    print(json.dumps(stages.evaluate(consumer, paths["on_features"])))


if __name__ == "__main__":
    sys.modules["tests.toy_consumer"] = sys.modules["__main__"]
    main()
