"""CPC's entries: on image patches and on sequences."""

from pipeline.capabilities import Encoder
from pipeline.models.cpc import CPCImageSpec, CPCSequenceSpec
from pipeline.plugins import ModelEntry, Plugin

PLUGIN = Plugin(
    name="cpc",
    summary="Contrastive predictive coding: predicting the codes of what comes next, against negatives (InfoNCE)",
    models={
        "cpc_image": ModelEntry(
            spec=CPCImageSpec,
            module="pipeline.models.cpc.image:CPCImage",
            summary="CPC v2 (Henaff et al. 2019): patch grid, masked context network, per-offset InfoNCE",
            modalities=("image",),
            provides=(Encoder,),
        ),
        "cpc_sequence": ModelEntry(
            spec=CPCSequenceSpec,
            module="pipeline.models.cpc.sequence:CPCSequence",
            summary="CPC (van den Oord et al. 2018): strided Conv1d codes, GRU context, InfoNCE k steps ahead",
            modalities=("sequence",),
            provides=(Encoder,),
        ),
    },
)
