"""Next-frame prediction: each frame of a video from t = 1 on, predicted by the model from the
true frames before it, against copying the last frame; scored by pipeline.evaluators.video."""

from __future__ import annotations

from pipeline.evaluators.context import Context, TaskResult
from pipeline.evaluators.video import prediction_task


def run(task, ctx: Context) -> TaskResult:
    return prediction_task(task, ctx, "next_frame", first=1, extrapolate_from=None, label="next-frame MSE per frame",
                           what="each frame predicted from the true frames before it")
