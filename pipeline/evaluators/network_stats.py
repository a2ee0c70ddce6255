"""What a network is made of and what it costs to run: the model's own `network_stats()`
(parameters, synapses used against a dense network of the same neurons, time constants, ODE
function evaluations of one forward pass), and the inference time per test sequence, measured
here the same way for every kind so that kinds can be compared.

The training wall time is not among them: the context does not carry it, and the evaluate stage
writes it beside the tasks' results (`training_wall_time_s` of evaluate.json)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from pipeline.data.datamodule import model_input
from pipeline.evaluators.context import Context, Headline, TaskResult

REQUIRED = ("parameters", "synapses_used", "synapses_dense")
BATCH = 256


@torch.no_grad()
def inference_ms(infer: Callable[[torch.Tensor], torch.Tensor], batches: list[torch.Tensor], device: str,
                 repeats: int) -> float:
    """Milliseconds per sequence: the median of `repeats` timed passes over the batches (already
    on the device, so that only the network is timed), after one untimed pass that warms caches
    and the allocator up. On a GPU the clock stops once the queued kernels have run."""
    synchronise = torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None

    def one_pass() -> float:
        synchronise()
        started = time.perf_counter()
        for batch in batches:
            infer(batch)
        synchronise()
        return time.perf_counter() - started

    one_pass()
    seconds = statistics.median(one_pass() for _ in range(repeats))
    return 1000 * seconds / sum(len(batch) for batch in batches)


@torch.no_grad()
def run(task, ctx: Context) -> TaskResult:
    model = ctx.trained.eval().to(ctx.device)
    # A forecaster reads a series and predicts its next value at every step; a classifier labels it.
    infer = model.predict_next if "label" not in ctx.splits.test else model.classify
    inputs = ctx.splits.test["input"]
    batches = [model_input(inputs[start:start + BATCH].to(ctx.device)) for start in range(0, len(inputs), BATCH)]
    milliseconds = inference_ms(infer, batches, ctx.device, task.timing_repeats)
    # The figures a model counts per pass (an ODE solver's steps) are of one pass over the first batch.
    stats = model.network_stats(lambda: infer(batches[0]))
    missing = [key for key in REQUIRED if key not in stats]
    if missing:
        raise ValueError(f"{type(model).__name__}.network_stats() lacks {', '.join(missing)} (it returned "
                         f"{', '.join(sorted(stats)) or 'nothing'}): the network_stats task reports "
                         f"{', '.join(REQUIRED)} of every model")
    metrics = {name: float(value) for name, value in stats.items()}
    metrics["inference_ms_per_sequence"] = milliseconds
    return TaskResult(metrics, [], Headline("synapses used", metrics["synapses_used"],
                                            {"dense": metrics["synapses_dense"]}, unit="synapses"))
