"""The continuous-time and reservoir networks' entries, with the discrete recurrent baseline."""

from pipeline.capabilities import Classifier, Encoder, Forecaster, NetworkStats
from pipeline.models.continuous import CfCSpec, CTRNNSpec, ESNSpec, LTCSpec, NeuralODESpec, RIMsSpec, RNNSpec
from pipeline.plugins import ModelEntry, Plugin

_SEQUENCE_NET = (Encoder, Classifier, NetworkStats, Forecaster)
_SEQUENCES = ("sequence", "series")

PLUGIN = Plugin(
    name="continuous",
    summary="Continuous-time and reservoir networks: neural ODEs, CT-RNNs, LTC and CfC (dense or NCP wiring), echo "
            "state networks, against GRU/LSTM baselines",
    models={
        "rnn": ModelEntry(
            spec=RNNSpec, module="pipeline.models.continuous.module:RNN",
            summary="GRU or LSTM (torch.nn): the discrete baseline of the continuous-time family, matched in "
                    "parameters",
            modalities=_SEQUENCES, provides=_SEQUENCE_NET),
        "rims": ModelEntry(
            spec=RIMsSpec, module="pipeline.models.continuous.rims:RIMs",
            summary="Recurrent independent mechanisms (Goyal et al. 2021): K GRU/LSTM modules, k updated per step "
                    "by input attention against a null input, communicating through attention",
            modalities=_SEQUENCES, provides=_SEQUENCE_NET),
        "ct_rnn": ModelEntry(
            spec=CTRNNSpec, module="pipeline.models.continuous.module:CTRNN",
            summary="Continuous-time RNN: learned time constants, Euler steps over each elapsed time",
            modalities=_SEQUENCES, provides=_SEQUENCE_NET),
        "ltc": ModelEntry(
            spec=LTCSpec, module="pipeline.models.continuous.module:LTC",
            summary="Liquid time-constant network (Hasani et al. 2021, ncps): input-dependent time constants; dense "
                    "or NCP wiring",
            modalities=_SEQUENCES, provides=_SEQUENCE_NET),
        "cfc": ModelEntry(
            spec=CfCSpec, module="pipeline.models.continuous.module:CfC",
            summary="Closed-form continuous-time network (Hasani et al. 2022, ncps): no ODE solver; dense or NCP "
                    "wiring",
            modalities=_SEQUENCES, provides=_SEQUENCE_NET),
        "esn": ModelEntry(
            spec=ESNSpec, module="pipeline.models.continuous.esn:ESN",
            summary="Echo state network (Jaeger 2001): fixed random reservoir, ridge-regression readout in closed "
                    "form",
            modalities=_SEQUENCES, provides=_SEQUENCE_NET),
        "neural_ode": ModelEntry(
            spec=NeuralODESpec, module="pipeline.models.continuous.ode:NeuralODE",
            summary="Neural ODE classifier (Chen et al. 2018, torchdiffeq): an ODE block, or the ResNet block it "
                    "replaces",
            modalities=("sequence",), provides=(Encoder, Classifier, NetworkStats)),
    },
)
