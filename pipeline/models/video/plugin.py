"""The video predictors' entries."""

from pipeline.capabilities import Encoder, VideoPredictor
from pipeline.models.video import PreCNetSpec, PredNetSpec
from pipeline.plugins import ModelEntry, Plugin

PLUGIN = Plugin(
    name="video_prediction",
    summary="Predictive video models: PredNet and PreCNet, next-frame prediction by predictive coding",
    models={
        "prednet": ModelEntry(
            spec=PredNetSpec,
            module="pipeline.models.video.module:PredNet",
            summary="PredNet (Lotter et al. 2016): ConvLSTM representations, error units split by sign, each layer's "
                    "target made from the error below; next-frame video prediction",
            modalities=("video",),
            provides=(Encoder, VideoPredictor),
        ),
        "precnet": ModelEntry(
            spec=PreCNetSpec,
            module="pipeline.models.video.module:PreCNet",
            summary="PreCNet (Straka et al. 2020): Rao-Ballard predictive coding, each layer predicting the pooled "
                    "representation below; top-down and bottom-up ConvLSTMs; next-frame video prediction",
            modalities=("video",),
            provides=(Encoder, VideoPredictor),
        ),
    },
)
