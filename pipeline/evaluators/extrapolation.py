"""Multi-step extrapolation: the model reads the first `context` true frames of a video, then runs
on its own predictions (rollout with `extrapolate_from=context`); the frames from `context` on are
scored against the last frame read repeated (frame context - 1), by pipeline.evaluators.video."""

from __future__ import annotations

from pipeline.errors import PipelineError
from pipeline.evaluators.context import Context, TaskResult
from pipeline.evaluators.video import check_videos, prediction_task


def run(task, ctx: Context) -> TaskResult:
    check_videos(ctx, "extrapolation")
    length = ctx.splits.input_shape[0]
    if task.context >= length:
        raise PipelineError(f"{ctx.spec.name}: extrapolation: context ({task.context}) must be below the videos' "
                            f"length ({length} frames): the frames after the context are the ones scored")
    predicted = length - task.context
    return prediction_task(task, ctx, "extrapolation", first=task.context, extrapolate_from=task.context,
                           label=f"extrapolation MSE per frame ({task.context} frames read, {predicted} predicted)",
                           what=f"frames {task.context}-{length - 1} predicted from frames 0-{task.context - 1}")
