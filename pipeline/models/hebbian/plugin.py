"""Hebbian learning's entry: the `hebbian` kind."""

from pipeline.capabilities import Encoder
from pipeline.models.hebbian import HebbianSpec
from pipeline.plugins import ModelEntry, Plugin

PLUGIN = Plugin(
    name="hebbian",
    summary="Hebbian layers trained without backpropagation: SoftHebb and Krotov-Hopfield competing units",
    models={
        "hebbian": ModelEntry(
            spec=HebbianSpec,
            module="pipeline.models.hebbian.module:HebbianNetwork",
            summary="dense or conv layers learnt by a local unsupervised rule: SoftHebb (soft winner-take-all, "
                    "anti-Hebbian non-winners, norm-adaptive rate; Journé et al. 2023) or Krotov & Hopfield's "
                    "competing hidden units (2019); a linear probe on validation after every epoch",
            modalities=("image",),
            provides=(Encoder,),
        ),
    },
)
