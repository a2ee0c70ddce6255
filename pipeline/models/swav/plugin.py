"""SwAV's entry."""

from pipeline.capabilities import Encoder
from pipeline.models.swav import SwAVSpec
from pipeline.plugins import ModelEntry, Plugin

PLUGIN = Plugin(
    name="swav",
    summary="SwAV: self-supervised online clustering with swapped prediction and multi-crop",
    models={
        "swav": ModelEntry(
            spec=SwAVSpec,
            module="pipeline.models.swav.module:SwAV",
            summary="SwAV (Caron et al. 2020): online clustering with swapped prediction, multi-crop",
            modalities=("image",),
            provides=(Encoder,),
        ),
    },
)
