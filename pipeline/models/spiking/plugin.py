"""The spiking networks' entries and their own task, the spike statistics."""

from typing import Any, Protocol, runtime_checkable

from pipeline.capabilities import Classifier, Encoder
from pipeline.models.spiking import LSNNSpec, SNNConvSpec, SNNTemporalSpec, SpikeStatsSpec
from pipeline.plugins import ModelEntry, Plugin, TaskEntry


@runtime_checkable
class Spiking(Protocol):
    """A spiking pass: `spike_batch(inputs, keep_first)` -> the decisions and per-layer spike counts
    (`stats.SpikeBatch`), and `spike_pictures(first, label, classes, out)` -> rasters and membrane
    traces of the first example."""

    def spike_batch(self, inputs: Any, keep_first: bool = False) -> Any: ...

    def spike_pictures(self, first: Any, label: str, classes: tuple[str, ...], out: Any) -> Any: ...


_SPIKING = (Encoder, Classifier, Spiking)
_PREDICTIONS = "pipeline.models.spiking.spike_stats:predictions"

PLUGIN = Plugin(
    name="spiking",
    summary="Spiking networks: LIF/ALIF neurons, spike encodings, surrogate gradients, LSNN with e-prop, temporal "
            "coding with closed-form spike times",
    models={
        "snn_conv": ModelEntry(
            spec=SNNConvSpec, module="pipeline.models.spiking.conv:SNNConv",
            summary="Convolutional spiking network (LIF), spike-encoded input, BPTT with surrogate gradients",
            modalities=("image",), provides=_SPIKING, predictions=_PREDICTIONS),
        "lsnn": ModelEntry(
            spec=LSNNSpec, module="pipeline.models.spiking.lsnn:LSNN",
            summary="LSNN (Bellec et al. 2018): recurrent LIF + ALIF, leaky readout; trained by e-prop (online "
                    "eligibility traces) or BPTT",
            modalities=("sequence", "image"), provides=_SPIKING, predictions=_PREDICTIONS),
        "snn_temporal": ModelEntry(
            spec=SNNTemporalSpec, module="pipeline.models.spiking.temporal:SNNTemporal",
            summary="Temporal coding (Comsa et al. 2020): alpha synapses, one spike per neuron, closed-form spike "
                    "times (Lambert W) and their gradients (W0' clipped; silent neurons pushed by an extra loss "
                    "term), sync pulses, first spike decides",
            modalities=("image",), provides=_SPIKING, predictions=_PREDICTIONS),
    },
    tasks={
        "spike_stats": TaskEntry(
            SpikeStatsSpec, "pipeline.models.spiking.spike_stats", (Spiking,),
            "spikes, sparsity, synaptic operations, energy, raster, membrane traces", default=40),
    },
    report="pipeline.models.spiking.report:sections",
)
