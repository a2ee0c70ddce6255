"""The `nengo_readout` task: every readout of a trained `nengo` network scored the same way on
the test split (and on validation, where settings are chosen), with learning off."""

from __future__ import annotations

import numpy as np

from pipeline import plots
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.models.nengo.network import readout_names

LABELS = {
    "spiking_pes": "spiking, PES-learned",
    "spiking_least_squares": "spiking, least squares",
    "rate_pes": "rate neurons, PES-learned",
    "rate_least_squares": "rate neurons, least squares",
}


def run(task, ctx: Context) -> TaskResult:
    model = ctx.trained
    channel = model.channel
    metric = "rmse" if channel else "accuracy"
    metrics: dict[str, float] = {}
    kept = {}
    for split, suffix in (("test", ""), ("val", "_val")):
        if split == "val" and not ctx.has_validation:
            continue
        data = getattr(ctx.splits, split)
        scores, outputs = model.simulate(data["input"], data.get("label"))
        metrics.update({f"{metric}_{name}{suffix}": value for name, value in scores.items()})
        # (channel: also rmse_<readout>_filtered, against the input through the same synapses)
        if channel:  # doing nothing: an output held at zero
            metrics[f"rmse_silent{suffix}"] = float(np.sqrt(np.mean(data["input"].double().numpy() ** 2)))
        if split == "test":
            kept = outputs
    pictures = [_signals(ctx, kept, task.plot_seconds) if channel else _confusion(ctx, kept)]
    if task.raster_neurons:
        pictures.append(_raster(ctx, model, task.raster_neurons))
    baselines = {LABELS[name]: metrics[f"{metric}_{name}"] for name in readout_names()[1:]}
    baselines_val = {LABELS[name]: metrics[f"{metric}_{name}_val"] for name in readout_names()[1:]
                     if f"{metric}_{name}_val" in metrics}
    if channel:
        baselines["silent output (0)"] = metrics["rmse_silent"]
        if "rmse_silent_val" in metrics:
            baselines_val["silent output (0)"] = metrics["rmse_silent_val"]
    headline = Headline(LABELS["spiking_pes"], metrics[f"{metric}_spiking_pes"], baselines,
                        unit="RMSE" if channel else "accuracy",
                        validation=metrics.get(f"{metric}_spiking_pes_val"), baselines_validation=baselines_val)
    return TaskResult(metrics, pictures, headline)


def _signals(ctx: Context, outputs: dict[str, np.ndarray], seconds: float):
    """The test input and every readout's decoded output over the first `seconds`."""
    import matplotlib.pyplot as plt

    dt = ctx.trained.spec.dt
    steps = min(int(round(seconds / dt)), len(outputs["spiking_pes"]))
    signal = ctx.splits.test["input"].double().numpy().transpose(0, 2, 1).reshape(-1, outputs["spiking_pes"].shape[1])
    time = np.arange(1, steps + 1) * dt
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(time, signal[:steps, 0], color="black", linewidth=2, label="input")
    ax.plot(time, outputs["reference"][:steps, 0], color="grey", linestyle="--", linewidth=1.5,
            label="input through the synapses")
    for name in readout_names():
        output = outputs[name]
        ax.plot(time, output[:steps, 0], linewidth=1, label=LABELS[name])
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("value (dimension 0)")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    ax.set_title(f"{ctx.spec.name}: the channel's decoded output on test, learning off", fontsize=10)
    return plots.save(fig, ctx.out / "decoded_signal.png")


def _confusion(ctx: Context, decisions: dict[str, np.ndarray]):
    labels = ctx.labels("test").numpy()
    predicted = decisions["spiking_pes"]
    accuracy = float((predicted == labels).mean())
    return plots.confusion_matrix(labels, predicted, ctx.splits.classes,
                                  f"{ctx.spec.name}: spiking, PES-learned readout ({accuracy:.1%})",
                                  ctx.out / "confusion_spiking_pes.png")


def _raster(ctx: Context, model, neurons: int):
    """Spikes of the first neurons while the network reads the first test items."""
    import matplotlib.pyplot as plt

    items = 1 if model.channel else 10
    spikes = model.spike_raster(ctx.splits.test["input"][:items], neurons)
    dt = model.spec.dt
    steps, cells = np.nonzero(spikes)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.scatter((steps + 1) * dt, cells, marker="|", s=12, color="black")
    if not model.channel:
        for edge in range(1, items):
            ax.axvline(edge * model.presentation_steps * dt, color="tab:red", linewidth=0.5, alpha=0.6)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("neuron")
    what = "the first second of test signal" if model.channel else f"the first {items} test images (red: next image)"
    ax.set_title(f"{ctx.spec.name}: spikes of {neurons} neurons reading {what}", fontsize=10)
    return plots.save(fig, ctx.out / "spike_raster.png")
