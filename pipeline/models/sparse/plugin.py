"""Sparse activity and weights' entry: the `sparse_cnn` kind."""

from pipeline.capabilities import Classifier, Encoder
from pipeline.models.sparse import SparseCNNSpec
from pipeline.plugins import ModelEntry, Plugin

PLUGIN = Plugin(
    name="sparse",
    summary="Sparse activity and sparse weights: k-winners-take-all with boosting, fixed sparse weight masks",
    models={
        "sparse_cnn": ModelEntry(
            spec=SparseCNNSpec,
            module="pipeline.models.sparse.module:SparseCNN",
            summary="CNN classifier, dense or sparse (Ahmad & Scheinkman 2019): k-winners-take-all with boosting "
                    "by duty cycles, fixed sparse weight masks, per layer",
            modalities=("image",),
            provides=(Encoder, Classifier),
        ),
    },
    report="pipeline.models.sparse.report:sections",
)
