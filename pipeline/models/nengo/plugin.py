"""Nengo's entry: the `nengo` kind, its `nengo_readout` task and the `white_signal` dataset.
Nothing here imports nengo (GPL, the `nengo` extra): only simulating does."""

from pipeline.capabilities import Encoder
from pipeline.data.source import DatasetSource, FieldSpec, RemoteFile
from pipeline.models.nengo import NefNetwork, NengoReadoutSpec, NengoSpec
from pipeline.plugins import ModelEntry, Plugin, TaskEntry

WHITE_SIGNAL = DatasetSource(
    name="white_signal",
    description="Band-limited white noise (up to 5 Hz, RMS 0.5) sampled every millisecond: 60 one-second windows "
                "for training, then 10 for testing, cut from one continuous signal; the next value at each step "
                "as the target (a communication channel reads the input itself)",
    files=(
        RemoteFile("x_train.npy", "e5e4e09c21d44d94d2ec8694682378ad401cdcad6edb7233371b54f478c4dbce"),
        RemoteFile("y_train.npy", "8a5dd6ca4079802b0ae92c9ace42cd0dfd48ea6c3a3daa868f458bcebb194a5a"),
        RemoteFile("x_test.npy", "18b237427c4f1d2265a6baf04602ccb73f0a8dfd287569e59aed0f1409faa065"),
        RemoteFile("y_test.npy", "95646a18bb4a4519eb6c4ea6b082383e0595e51440b2d3c0187daf7d20dca545"),
    ),
    reader="pipeline.models.nengo.signals:read",
    modality="series",
    fields=(FieldSpec("input", "float32", (1, 1000), "the signal over one second"),
            FieldSpec("target", "float32", (1, 1000), "the next value at each step")),
    mirror_env="WHITE_SIGNAL_DIR",
    generator="pipeline.models.nengo.signals:generate",
)


def _readout(data: str) -> list[dict]:
    """A nengo network is read by its own readouts; probes of its rates run when listed."""
    return [{"kind": "nengo_readout"}]


PLUGIN = Plugin(
    name="nengo",
    summary="Neural Engineering Framework networks learning online (PES, BCM, Oja, Voja) in Nengo's simulator",
    models={
        "nengo": ModelEntry(
            spec=NengoSpec,
            module="pipeline.models.nengo.module:NengoNetwork",
            summary="LIF ensembles in Nengo's numpy simulator, connections learnt online by PES (with BCM, Oja or "
                    "Voja): a communication channel (series) or a classifier on principal components (images), "
                    "beside least-squares readouts and rate-neuron twins; needs the GPL `nengo` extra",
            modalities=("series", "image"),
            provides=(Encoder, NefNetwork),
            single_process=True,
            cpu_only=True,
            default_tasks=_readout,
        ),
    },
    tasks={
        "nengo_readout": TaskEntry(
            NengoReadoutSpec, "pipeline.models.nengo.task", (NefNetwork,),
            "every readout of a nengo network (PES-learned and least squares, spiking and rate) on test, "
            "learning off: RMSE against the input, or accuracy", data="any"),
    },
    datasets=(WHITE_SIGNAL,),
)
