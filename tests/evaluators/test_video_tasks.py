"""The video tasks (next_frame, extrapolation, object_probe) on stub models whose answers are known,
in a context built by hand: no training."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from pipeline import plugins
from pipeline.capabilities import Encoder, VideoPredictor
from pipeline.data.datamodule import Splits
from pipeline.errors import PipelineError
from pipeline.evaluators import (
    extrapolation,
    next_frame,
    object_probe,
    video,
)
from pipeline.evaluators.context import Context
from pipeline.evaluators.specs import ExtrapolationSpec, NextFrameSpec, ObjectProbeSpec

CLASSES = tuple(f"class {i}" for i in range(10))
LENGTH, SIDE = 6, 16


class PreviousFrame(nn.Module):
    """Predicts each frame by the one before it; from step k = extrapolate_from on, by its own
    previous prediction (so frame k - 1 throughout). Records what each call was asked."""

    def __init__(self, encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.calls: list[int | None] = []

    def rollout(self, frames: torch.Tensor, extrapolate_from: int | None = None) -> torch.Tensor:
        self.calls.append(extrapolate_from)
        predicted = torch.full_like(frames, 0.5)  # frame 0: never scored
        for t in range(1, frames.shape[1]):
            own = extrapolate_from is not None and t - 1 >= extrapolate_from
            predicted[:, t] = predicted[:, t - 1] if own else frames[:, t - 1]
        return predicted


class Perfect(nn.Module):
    def rollout(self, frames: torch.Tensor, extrapolate_from: int | None = None) -> torch.Tensor:
        return frames.clone()


class RowMeans(nn.Module):
    """Each image row's mean intensity over the frames: the rows that tell the classes (see videos)."""

    out_dim = SIDE

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.mean(dim=(1, 2, 4))


class FirstPixels(nn.Module):
    """The first pixels of the first frame: next to nothing about the classes."""

    out_dim = 4

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.flatten(1)[:, :4]


def videos(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Noisy dark frames uint8 [n, LENGTH, 1, SIDE, SIDE], two items' classes each (the first
    sequence's two the same); a bright row 3 + c for each class c it holds, in every frame."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n, 2), generator=generator)
    labels[0] = torch.tensor([4, 4])
    frames = torch.randint(0, 60, (n, LENGTH, 1, SIDE, SIDE), generator=generator, dtype=torch.uint8)
    for i, (a, b) in enumerate(labels.tolist()):
        frames[i, :, :, 3 + a] = 220
        frames[i, :, :, 3 + b] = 220
    return {"input": frames, "labels": labels}


def video_splits(train: int = 40, val: int = 12, test: int = 12) -> Splits:
    return Splits(train=videos(train, 0), val=videos(val, 1), test=videos(test, 2), classes=CLASSES)


class Recorder:
    """Stands in for the MLflow run: keeps the series logged."""

    def __init__(self):
        self.logged: list[tuple[dict[str, float], int]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logged.append((metrics, step))


def context(splits: Splits, trained: nn.Module, out: Path, initial: nn.Module | None = None,
            run: Recorder | None = None) -> Context:
    return Context(SimpleNamespace(name="toy", seed=0), splits, trained, initial or trained, out, "cpu", run)


# ---------------------------------------------------------------- the figures


def constant_frames(*sequences: tuple[int, ...]) -> torch.Tensor:
    """uint8 videos [N, T, 1, SIDE, SIDE], each frame one intensity throughout."""
    values = torch.tensor(sequences, dtype=torch.uint8)
    return values[:, :, None, None, None].expand(-1, -1, 1, SIDE, SIDE).contiguous()


def test_copy_last_frame_figures_against_hand_computed_values():
    """Two sequences of constant frames (intensities /255: 0, 1, 0.2 and 0.2, 0.4, 0.8): copying
    the last frame misses by 1 and 0.8, then 0.2 and 0.4, at every pixel."""
    inputs = constant_frames((0, 255, 51), (51, 102, 204))
    misses = [[1.0, 0.8], [0.2, 0.4]]  # [sequence][frame 1, frame 2]
    pixels = SIDE * SIDE
    scores = video.score(PreviousFrame(), inputs, 1, None, 1, "cpu")  # one sequence a batch: sums across batches
    baseline = scores["copy_last_"]
    assert baseline.steps == [1, 2] and baseline.sequences == 2
    per_frame = [pixels * (misses[0][t] ** 2 + misses[1][t] ** 2) / 2 for t in range(2)]
    assert baseline.per_step["mse_per_frame"].tolist() == pytest.approx(per_frame, rel=1e-5)
    figures = baseline.overall()
    assert figures["mse_per_frame"] == pytest.approx(sum(per_frame) / 2, rel=1e-5)  # 117.76
    assert figures["mse_per_pixel"] == pytest.approx(sum(per_frame) / 2 / pixels, rel=1e-5)
    psnr = [10 * math.log10(1 / miss ** 2) for row in misses for miss in row]  # data range 1
    assert figures["psnr"] == pytest.approx(sum(psnr) / 4, abs=1e-4)
    assert scores[""].overall() == figures  # a model that copies the last frame scores exactly the baseline


def test_a_perfect_model_has_no_error_and_full_similarity():
    figures = video.score(Perfect(), videos(5, 0)["input"], 1, None, 2, "cpu")[""].overall()
    assert figures["mse_per_frame"] == 0 and figures["mse_per_pixel"] == 0
    assert figures["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert math.isinf(figures["psnr"])


def test_the_extrapolation_baseline_repeats_the_last_frame_read():
    frames = torch.arange(6.0)[None, :, None, None, None].expand(2, 6, 1, 4, 4) / 10
    copied = video.copy_last(frames, extrapolate_from=3)
    assert copied[0, 1:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.2, 0.2])
    assert video.copy_last(frames)[0, 1:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_extrapolate_from_reaches_the_model_and_frames_after_the_context_are_scored():
    model = PreviousFrame()
    scores = video.score(model, videos(5, 0)["input"], 4, 4, 2, "cpu")
    assert model.calls == [4, 4, 4]  # three batches
    assert scores[""].steps == [4, 5]
    assert scores[""].overall() == scores["copy_last_"].overall()  # its own predictions: frame 3 repeated


def test_a_rollout_of_the_wrong_shape_is_refused():
    class Short(nn.Module):
        def rollout(self, frames, extrapolate_from=None):
            return frames[:, 1:]

    with pytest.raises(ValueError, match="Short.rollout returned shape"):
        video.score(Short(), videos(2, 0)["input"], 1, None, 2, "cpu")


# ---------------------------------------------------------------- next_frame and extrapolation


def test_next_frame_end_to_end(tmp_path):
    run = Recorder()
    result = next_frame.run(NextFrameSpec(strips=3), context(video_splits(), PreviousFrame(), tmp_path, run=run))
    m = result.metrics
    for metric in video.METRICS:
        assert m[metric] == m[f"copy_last_{metric}"] and m[f"{metric}_val"] == m[f"copy_last_{metric}_val"]
    assert m["sequences"] == 12
    headline = result.headline
    assert headline.label == "next-frame MSE per frame" and headline.unit == "MSE"
    assert headline.value == m["mse_per_frame"] > 0
    assert headline.baselines == {"copy last frame": m["copy_last_mse_per_frame"]}
    assert headline.validation == m["mse_per_frame_val"]
    assert headline.baselines_validation == {"copy last frame": m["copy_last_mse_per_frame_val"]}
    names = [path.name for path in result.artifacts]
    assert names[0] == "next_frame_per_frame.png" and len(names) == 4
    assert all(name.startswith("next_frame_sequence_") for name in names[1:])
    assert all(path.stat().st_size > 0 for path in result.artifacts)
    assert [step for _, step in run.logged] == list(range(1, LENGTH))
    assert {"next_frame/mse_per_frame_at_frame", "next_frame/copy_last_ssim_at_frame"} <= set(run.logged[0][0])


def test_next_frame_caps_the_sequences_scored(tmp_path):
    result = next_frame.run(NextFrameSpec(max_sequences=5, strips=0), context(video_splits(), Perfect(), tmp_path))
    assert result.metrics["sequences"] == 5 and result.metrics["mse_per_frame"] == 0
    assert [path.name for path in result.artifacts] == ["next_frame_per_frame.png"]


def test_extrapolation_end_to_end(tmp_path):
    model = PreviousFrame()
    result = extrapolation.run(ExtrapolationSpec(context=3, strips=2, batch_size=5),
                               context(video_splits(), model, tmp_path))
    assert set(model.calls) == {3}
    m = result.metrics
    assert m["mse_per_frame"] == m["copy_last_mse_per_frame"] > 0
    headline = result.headline
    assert headline.label == "extrapolation MSE per frame (3 frames read, 3 predicted)" and headline.unit == "MSE"
    assert headline.baselines == {"copy last frame": m["copy_last_mse_per_frame"]}
    assert headline.validation == m["mse_per_frame_val"]
    assert [path.name for path in result.artifacts][0] == "extrapolation_per_frame.png" and len(result.artifacts) == 3


def test_an_extrapolation_context_the_videos_cannot_serve_is_refused(tmp_path):
    with pytest.raises(PipelineError, match=r"context \(6\) must be below the videos' length \(6 frames\)"):
        extrapolation.run(ExtrapolationSpec(context=6), context(video_splits(), PreviousFrame(), tmp_path))
    with pytest.raises(ValidationError):
        ExtrapolationSpec(context=0)


# ---------------------------------------------------------------- object_probe


def test_object_recall_on_hand_made_scores():
    labels = torch.tensor([[2, 5], [3, 3], [1, 1], [0, 9]])
    targets = object_probe.multi_hot(labels, 10)
    assert targets.sum(dim=1).tolist() == [2, 1, 1, 2]  # a class held twice counts once
    scores = torch.zeros(4, 10)
    scores[0, [2, 7]] = torch.tensor([2.0, 3.0])  # top two: 7 and 2, one of {2, 5}
    scores[1, [3, 8]] = torch.tensor([5.0, 1.0])  # top one: 3, the only class
    scores[2, [4, 1]] = torch.tensor([2.0, 1.0])  # top one: 4, not 1
    scores[3, [9, 0]] = torch.tensor([4.0, 3.0])  # top two: both
    assert object_probe.object_recall(scores, targets) == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    per_class = object_probe.per_class_recall(scores, targets)
    assert per_class[[0, 1, 2, 3, 5, 9]].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]


def test_the_knn_vote_sums_its_neighbours_class_sets():
    bank = (torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]),
            object_probe.multi_hot(torch.tensor([[0, 1], [1, 1], [2, 2]]), 3))
    scores = object_probe.knn_scores(bank, torch.tensor([[1.0, 0.1]]), k=2, temperature=1.0)
    first, second = math.exp(1 / math.sqrt(1.01)), math.exp((0.8 + 0.06) / math.sqrt(1.01))
    assert scores[0].tolist() == pytest.approx([first, first + second, 0.0])


def test_object_probe_end_to_end(tmp_path):
    trained, initial = PreviousFrame(RowMeans()), PreviousFrame(FirstPixels())
    task = ObjectProbeSpec(weight_decays=[1e-2, 1e-4], max_iter=50, k=5, train_subset=30)
    result = object_probe.run(task, context(video_splits(), trained, tmp_path, initial))
    m = result.metrics
    assert m["linear_encoder"] == 1.0 and m["knn_encoder"] > 0.5  # the rows tell the classes
    assert m["linear_random_encoder"] < 0.6
    assert all(0 <= m[f"{probe}_{name}{split}"] <= 1 for probe in ("linear", "knn")
               for name in object_probe.FEATURE_SETS for split in ("", "_val"))
    headline = result.headline
    assert headline.label == "linear probe object recall" and headline.unit == "accuracy"
    assert headline.value == m["linear_encoder"] and headline.validation == m["linear_encoder_val"]
    assert headline.baselines == {"untrained": m["linear_random_encoder"], "raw frames": m["linear_raw_frames"]}
    assert set(headline.baselines_validation) == {"untrained", "raw frames"}
    assert [path.name for path in result.artifacts] == ["object_probe.png"]
    assert result.artifacts[0].stat().st_size > 0


def test_the_raw_frames_baseline_pools_the_last_frame():
    inputs = torch.zeros(2, 3, 1, 64, 64, dtype=torch.uint8)
    inputs[:, -1, :, :2, :2] = 255
    features = object_probe.raw_frames(inputs)
    assert features.shape == (2, 32 * 32) and features[0, 0] == 1.0 and features[0, 1:].sum() == 0


# ---------------------------------------------------------------- registration


def test_video_data_gets_the_video_tasks_by_default():
    provides = (VideoPredictor, Encoder)
    assert [task["kind"] for task in plugins.default_tasks(provides, "video")] == [
        "next_frame", "extrapolation", "object_probe"]
    assert not {"next_frame", "extrapolation", "object_probe"} & {
        task["kind"] for task in plugins.default_tasks(provides, "labelled")}
    tasks = plugins.tasks()
    assert {tasks[kind].data for kind in ("next_frame", "extrapolation", "object_probe")} == {"video"}
    assert tasks["next_frame"].needs == (VideoPredictor,)
    assert tasks["extrapolation"].needs == (VideoPredictor,)
