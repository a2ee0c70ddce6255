"""The model registry: spec `kind` -> the family's spec class and how to build its module.

Importing this module imports only pydantic: the spec union is built from it, and the CLI
validates specs without loading torch. A family's LightningModule is imported when built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from pipeline.models.continual import ContinualSpec
from pipeline.models.continuous import CfCSpec, CTRNNSpec, ESNSpec, LTCSpec, NeuralODESpec, RNNSpec
from pipeline.models.cpc import CPCImageSpec, CPCSequenceSpec
from pipeline.models.predictive_coding import FeedforwardSpec
from pipeline.models.spiking import LSNNSpec, SNNConvSpec, SNNTemporalSpec
from pipeline.models.swav import SwAVSpec
from pipeline.models.video import PreCNetSpec, PredNetSpec
from pipeline.models.voken import VokenLMSpec, VokenMatcherSpec


@dataclass(frozen=True)
class ModelEntry:
    spec: type[BaseModel]
    module: str
    """`package.module:ClassName` of the LightningModule, built as
    ClassName(model_spec, train_spec, input_shape, num_classes)."""
    summary: str
    modalities: tuple[str, ...]
    """The dataset modalities (see DatasetSource.modality) it trains on; a spec pairing it with
    another is rejected at validation."""
    provides: frozenset[str] = frozenset({"encoder"})
    """What its trained model offers downstream tasks (see EvaluatorEntry.needs): "encoder"
    (features), "classifier" (its own predictions: `predict`), "spikes" (`spike_pass`),
    "network_stats" (`network_stats()`: parameters, synapses, time constants, solver steps),
    "forecaster" (`predict_next` and `generate` on a series: the `forecast` task), "video_predictor"
    (`rollout`: each frame predicted from those before it, or extrapolated: the video tasks),
    "continual" (`matrix`, `summary`, `strategy.memory()`: the accuracy matrices of a stream)."""
    takes_encoder: bool = False
    """Whether it can start from an upstream spec's trained encoder (`upstream.encoder`), which
    it then receives as the `encoder` keyword of its constructor."""

    single_process: bool = False
    """Whether it trains in one process only (its protocol keeps state that one process updates
    between fits, a continual learner's buffers say): a spec asking for DDP is rejected."""

    def load_class(self) -> Any:
        module_name, class_name = self.module.split(":")
        return getattr(importlib.import_module(module_name), class_name)


_SEQUENCE_NET = frozenset({"encoder", "classifier", "network_stats", "forecaster"})

REGISTRY: dict[str, ModelEntry] = {
    "continual": ModelEntry(
        spec=ContinualSpec,
        module="pipeline.models.continual.module:Continual",
        summary="Continual learner over a stream of experiences (class-, task- or domain-incremental): naive, joint, "
                "cumulative, EWC, SI, LwF, replay, GDumb, latent replay / AR1*, REMIND, an energy-based classifier; "
                "an MLP or an upstream spec's encoder",
        modalities=("image", "sequence"),
        provides=frozenset({"encoder", "classifier", "continual"}),
        takes_encoder=True,
        single_process=True,
    ),
    "feedforward": ModelEntry(
        spec=FeedforwardSpec,
        module="pipeline.models.predictive_coding.module:Feedforward",
        summary="MLP or small CNN classifier trained by backprop or by predictive coding (Whittington & Bogacz "
                "2017; Millidge et al. 2020): inference over value nodes, local weight updates; optional fixed "
                "prediction (= backprop exactly)",
        modalities=("image",),
        provides=frozenset({"encoder", "classifier"}),
    ),
    "swav": ModelEntry(
        spec=SwAVSpec,
        module="pipeline.models.swav.module:SwAV",
        summary="SwAV (Caron et al. 2020): online clustering with swapped prediction, multi-crop",
        modalities=("image",),
    ),
    "cpc_image": ModelEntry(
        spec=CPCImageSpec,
        module="pipeline.models.cpc.image:CPCImage",
        summary="CPC v2 (Henaff et al. 2019): patch grid, masked context network, per-offset InfoNCE",
        modalities=("image",),
    ),
    "cpc_sequence": ModelEntry(
        spec=CPCSequenceSpec,
        module="pipeline.models.cpc.sequence:CPCSequence",
        summary="CPC (van den Oord et al. 2018): strided Conv1d codes, GRU context, InfoNCE k steps ahead",
        modalities=("sequence",),
    ),
    "snn_conv": ModelEntry(
        spec=SNNConvSpec,
        module="pipeline.models.spiking.conv:SNNConv",
        summary="Convolutional spiking network (LIF), spike-encoded input, BPTT with surrogate gradients",
        modalities=("image",),
        provides=frozenset({"encoder", "classifier", "spikes"}),
    ),
    "lsnn": ModelEntry(
        spec=LSNNSpec,
        module="pipeline.models.spiking.lsnn:LSNN",
        summary="LSNN (Bellec et al. 2018): recurrent LIF + ALIF, leaky readout; trained by e-prop (online "
                "eligibility traces) or BPTT",
        modalities=("sequence", "image"),
        provides=frozenset({"encoder", "classifier", "spikes"}),
    ),
    "snn_temporal": ModelEntry(
        spec=SNNTemporalSpec,
        module="pipeline.models.spiking.temporal:SNNTemporal",
        summary="Temporal coding (Comsa et al. 2020): alpha synapses, one spike per neuron, closed-form spike "
                "times (Lambert W) and their gradients (W0' clipped; silent neurons pushed by an extra loss "
                "term), sync pulses, first spike decides",
        modalities=("image",),
        provides=frozenset({"encoder", "classifier", "spikes"}),
    ),
    "rnn": ModelEntry(
        spec=RNNSpec,
        module="pipeline.models.continuous.module:RNN",
        summary="GRU or LSTM (torch.nn): the discrete baseline of the continuous-time family, matched in parameters",
        modalities=("sequence", "series"),
        provides=_SEQUENCE_NET,
    ),
    "ct_rnn": ModelEntry(
        spec=CTRNNSpec,
        module="pipeline.models.continuous.module:CTRNN",
        summary="Continuous-time RNN: learned time constants, Euler steps over each elapsed time",
        modalities=("sequence", "series"),
        provides=_SEQUENCE_NET,
    ),
    "ltc": ModelEntry(
        spec=LTCSpec,
        module="pipeline.models.continuous.module:LTC",
        summary="Liquid time-constant network (Hasani et al. 2021, ncps): input-dependent time constants; dense or "
                "NCP wiring",
        modalities=("sequence", "series"),
        provides=_SEQUENCE_NET,
    ),
    "cfc": ModelEntry(
        spec=CfCSpec,
        module="pipeline.models.continuous.module:CfC",
        summary="Closed-form continuous-time network (Hasani et al. 2022, ncps): no ODE solver; dense or NCP wiring",
        modalities=("sequence", "series"),
        provides=_SEQUENCE_NET,
    ),
    "esn": ModelEntry(
        spec=ESNSpec,
        module="pipeline.models.continuous.esn:ESN",
        summary="Echo state network (Jaeger 2001): fixed random reservoir, ridge-regression readout in closed form",
        modalities=("sequence", "series"),
        provides=_SEQUENCE_NET,
    ),
    "prednet": ModelEntry(
        spec=PredNetSpec,
        module="pipeline.models.video.module:PredNet",
        summary="PredNet (Lotter et al. 2016): ConvLSTM representations, error units split by sign, each layer's "
                "target made from the error below; next-frame video prediction",
        modalities=("video",),
        provides=frozenset({"encoder", "video_predictor"}),
    ),
    "precnet": ModelEntry(
        spec=PreCNetSpec,
        module="pipeline.models.video.module:PreCNet",
        summary="PreCNet (Straka et al. 2020): Rao-Ballard predictive coding, each layer predicting the pooled "
                "representation below; top-down and bottom-up ConvLSTMs; next-frame video prediction",
        modalities=("video",),
        provides=frozenset({"encoder", "video_predictor"}),
    ),
    "neural_ode": ModelEntry(
        spec=NeuralODESpec,
        module="pipeline.models.continuous.ode:NeuralODE",
        summary="Neural ODE classifier (Chen et al. 2018, torchdiffeq): an ODE block, or the ResNet block it replaces",
        modalities=("sequence",),
        provides=frozenset({"encoder", "classifier", "network_stats"}),
    ),
    "voken_matcher": ModelEntry(
        spec=VokenMatcherSpec,
        module="pipeline.models.voken.matcher:VokenMatcher",
        summary="Vokenization token-image matcher (Tan & Bansal 2020): caption transformer and image CNN (or an "
                "upstream encoder) in a joint space, token-image hinge ranking loss over in-batch negatives",
        modalities=("image-text",),
        provides=frozenset({"encoder", "matcher"}),
        takes_encoder=True,
    ),
    "voken_lm": ModelEntry(
        spec=VokenLMSpec,
        module="pipeline.models.voken.lm:VokenLM",
        summary="Small BERT (Tan & Bansal 2020): masked language modelling plus voken classification of every "
                "token (matched vokens, a random per-type control, or none)",
        modalities=("text",),
        provides=frozenset({"encoder", "language_model"}),
    ),
}
