"""Predictive coding's entry."""

from pipeline.capabilities import Classifier, Encoder
from pipeline.models.predictive_coding import FeedforwardSpec
from pipeline.plugins import ModelEntry, Plugin

PLUGIN = Plugin(
    name="predictive_coding",
    summary="Predictive coding as a learning rule: inference over value nodes, local weight updates",
    models={
        "feedforward": ModelEntry(
            spec=FeedforwardSpec,
            module="pipeline.models.predictive_coding.module:Feedforward",
            summary="MLP or small CNN classifier trained by backprop or by predictive coding (Whittington & Bogacz "
                    "2017; Millidge et al. 2020): inference over value nodes, local weight updates; optional fixed "
                    "prediction (= backprop exactly)",
            modalities=("image",),
            provides=(Encoder, Classifier),
        ),
    },
)
