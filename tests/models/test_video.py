"""PredNet and PreCNet: error units, what each layer predicts, the loss's time weights, causality,
extrapolation, validation before compute, and learning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.video import PreCNetSpec, PredNetSpec
from pipeline.models.video.module import (
    PreCNet,
    PreCNetStack,
    PredNet,
    PredNetStack,
    error_units,
    mse_per_frame,
    prediction_loss,
)
from pipeline.spec.experiment import TrainSpec
from pipeline.spec.load import SpecError, load, load_text

SHAPE = (6, 1, 16, 16)


def stacks(seed: int = 0, **fields) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    return {"prednet": PredNetStack(PredNetSpec(kind="prednet", r_channels=[4, 6, 8], **fields), SHAPE),
            "precnet": PreCNetStack(PreCNetSpec(kind="precnet", r_channels=[4, 6, 8], **fields), SHAPE)}


def videos(batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, *SHAPE, generator=torch.Generator().manual_seed(seed))


def random_state(stack, batch: int = 2):
    state = stack.initial_state(batch, torch.zeros(1))
    generator = torch.Generator().manual_seed(5)
    for group in (state.r, state.c, state.e):
        for i, tensor in enumerate(group):
            group[i] = torch.rand(tensor.shape, generator=generator) - (0.5 if group is not state.e else 0)
    return state


def test_error_units_split_the_error_by_its_sign():
    prediction = torch.tensor([0.2, 0.9, 0.5]).view(1, 3, 1, 1)
    target = torch.tensor([0.5, 0.4, 0.5]).view(1, 3, 1, 1)
    units = error_units(prediction, target).flatten()
    torch.testing.assert_close(units, torch.tensor([0.0, 0.5, 0.0, 0.3, 0.0, 0.0]))  # [above, below]
    assert (units >= 0).all()


def test_prednet_targets_are_made_from_the_errors_below_and_precnet_targets_are_representations():
    nets = stacks()
    frame = videos(2)[:, 0]
    with torch.no_grad():
        prednet = nets["prednet"].step(frame, random_state(nets["prednet"]))
        precnet = nets["precnet"].step(frame, random_state(nets["precnet"]))
    for level in (1, 2):
        made = F.max_pool2d(F.relu(nets["prednet"].to_target[level - 1](prednet.state.e[level - 1])), 2)
        torch.testing.assert_close(prednet.targets[level], made)
        # PreCNet: the pooled representation below, as updated in this step's bottom-up pass
        torch.testing.assert_close(precnet.targets[level], F.max_pool2d(precnet.state.r[level - 1], 2))
        torch.testing.assert_close(precnet.state.e[level], error_units(precnet.predictions[level],
                                                                        precnet.targets[level]))
    assert prednet.targets[0] is frame
    assert precnet.targets[0] is frame


def test_with_no_error_below_prednet_has_nothing_to_predict_above_while_precnet_still_does():
    """When the bottom error is zero (the frame was predicted exactly), PredNet's next target is
    the same at every position (built from zero error); PreCNet's is the representation below."""
    nets = stacks()
    with torch.no_grad():
        prednet = nets["prednet"].step(None, random_state(nets["prednet"]))  # None: the prediction is the frame
        precnet = nets["precnet"].step(None, random_state(nets["precnet"]))
    assert prednet.state.e[0].abs().max() == 0
    assert precnet.state.e[0].abs().max() == 0
    flat = prednet.targets[1].flatten(2)
    torch.testing.assert_close(flat, flat[:, :, :1].expand_as(flat))
    assert precnet.targets[1].flatten(2).std(dim=2).min() > 1e-3


def test_precnet_errors_are_recomputed_against_the_updated_lower_representation():
    """The top-down pass compares a layer's prediction with the pooled lower representation of
    the previous step; the bottom-up pass with the one just updated."""
    net = stacks()["precnet"]
    state = random_state(net)
    old_below = F.max_pool2d(state.r[0], 2)
    with torch.no_grad():
        out = net.step(videos(2)[:, 0], state)
    assert not torch.allclose(out.targets[1], old_below)
    torch.testing.assert_close(out.state.e[1], error_units(out.predictions[1], F.max_pool2d(out.state.r[0], 2)))


def test_the_first_frame_carries_no_loss_and_the_layer_weights_apply():
    errors = torch.rand(4, 6, 3)
    changed = errors.clone()
    changed[:, 0] += 100
    weights = [1.0, 0.5, 0.0]
    assert prediction_loss(changed, weights) == prediction_loss(errors, weights)
    expected = (errors[:, 1:, 0] + 0.5 * errors[:, 1:, 1]).mean()
    torch.testing.assert_close(prediction_loss(errors, weights), expected)
    upper = errors.clone()
    upper[:, :, 2] += 100  # a layer of weight 0 does not count
    assert prediction_loss(upper, weights) == prediction_loss(errors, weights)


@pytest.mark.parametrize("loss, power", [("l1", 1), ("l2", 2)])
def test_a_layers_error_is_the_mean_of_its_error_units_or_of_their_squares(loss: str, power: int):
    net = stacks(loss=loss)["precnet"]
    frames = videos(2)
    with torch.no_grad():
        _, errors, state = net.run(frames)
    torch.testing.assert_close(errors[:, -1, 0], state.e[0].flatten(1).pow(power).mean(dim=1))


@pytest.mark.parametrize("kind", ["prednet", "precnet"])
def test_each_prediction_reads_only_the_frames_before_it(kind: str):
    net = stacks()[kind]
    with torch.no_grad():
        net.ahat[0].bias.fill_(0.3)  # predictions off zero, where the ReLU would hide what they read
    frames = videos(2)
    changed = frames.clone()
    changed[:, 3:] = torch.rand_like(changed[:, 3:])
    with torch.no_grad():
        before, _, _ = net.run(frames)
        after, _, _ = net.run(changed)
        torch.testing.assert_close(before[:, :4], after[:, :4])  # frame 3 is predicted from frames 0-2
        assert not torch.allclose(before[:, 4:], after[:, 4:])
        # Extrapolating from frame 3, frames 3 on are never read.
        first, _, _ = net.run(frames, extrapolate_from=3)
        second, _, _ = net.run(changed, extrapolate_from=3)
    torch.testing.assert_close(first, second)
    assert before.shape == frames.shape
    assert 0 <= before.min()
    assert before.max() <= 1


def test_predicted_frames_are_clipped_to_the_pixel_range():
    net = stacks(pixel_max=0.3)["prednet"]
    with torch.no_grad():
        net.ahat[0].bias.fill_(5.0)
        predicted, _, _ = net.run(videos(1))
    assert predicted.max() == pytest.approx(0.3)


def test_mse_per_frame_sums_over_a_frames_pixels_from_the_second_frame_on():
    frames = torch.zeros(2, 3, 1, 2, 2)
    predicted = torch.zeros_like(frames)
    predicted[:, 0] = 9.0  # never scored
    predicted[0, 1] = 0.5  # 4 pixels, squared error 0.25 each: 1.0 for that frame
    assert mse_per_frame(predicted, frames).item() == pytest.approx(1.0 / 4)  # 4 scored frames


def write_spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(body)
    return path


def test_frame_sides_must_be_divisible_by_two_to_the_layers_minus_one_said_at_the_models_line(tmp_path: Path):
    body = ("name: too_deep\n"
            "data: {dataset: moving_fmnist_32}\n"
            "model:\n"
            "  kind: precnet\n"
            "  r_channels: [2, 2, 2, 2, 2, 2, 2]\n")
    with pytest.raises(SpecError) as caught:
        load(write_spec(tmp_path, body))
    message = str(caught.value)
    assert "spec.yaml:3:" in message
    assert "divisible by 2^(layers-1) = 64" in message
    load_text(body.replace("[2, 2, 2, 2, 2, 2, 2]", "[2, 2, 2, 2, 2, 2]"), "ok.yaml")  # 32 / 2^5 = 1: fine


def test_video_models_take_videos_only_and_the_video_tasks_need_a_video_model():
    with pytest.raises(SpecError, match="takes video data"):
        load_text("name: x\ndata: {dataset: fashion_mnist}\nmodel: {kind: prednet}\n", "x.yaml")
    with pytest.raises(SpecError, match="next_frame"):
        load_text("name: x\ndata: {dataset: fashion_mnist}\nmodel: {kind: swav}\n"
                  "downstream: [{kind: next_frame}]\n", "x.yaml")
    with pytest.raises(SpecError, match="needs class labels"):
        load_text("name: x\ndata: {dataset: moving_fmnist_32}\nmodel: {kind: precnet}\n"
                  "downstream: [{kind: linear_probe}]\n", "x.yaml")
    spec = load_text("name: x\ndata: {dataset: moving_fmnist_32}\nmodel: {kind: prednet}\n", "x.yaml")
    assert [task.kind for task in spec.downstream] == ["next_frame", "extrapolation", "object_probe"]


def test_the_shipped_full_specs_compare_the_two_at_equal_parameters():
    root = Path(__file__).resolve().parents[2] / "specs"
    counts = {}
    for kind, module in (("prednet", PredNet), ("precnet", PreCNet)):
        spec = load(root / f"{kind}_moving_fmnist.yaml")
        net = module(spec.model, spec.train, (20, 1, 64, 64), 10)
        counts[kind] = sum(p.numel() for p in net.parameters())
        other = spec.model_dump(include={"data", "train", "downstream", "seeds"})
        counts[f"{kind}/rest"] = other
    assert abs(counts["prednet"] - counts["precnet"]) / counts["precnet"] < 0.01
    assert counts["prednet/rest"] == counts["precnet/rest"]


@pytest.mark.parametrize("module, spec", [(PredNet, PredNetSpec(kind="prednet", r_channels=[4, 8])),
                                          (PreCNet, PreCNetSpec(kind="precnet", r_channels=[4, 8]))])
def test_training_on_its_own_errors_lowers_the_next_frame_error(module, spec):
    """A few dozen Adam steps on one batch of moving squares: the prediction error falls."""
    torch.manual_seed(0)
    frames = torch.zeros(4, 6, 1, 16, 16)
    for t in range(6):
        frames[:, t, :, 4:8, 2 + 2 * t:6 + 2 * t] = 1.0  # a square moving right 2 px a frame
    net = module(spec, TrainSpec(), (6, 1, 16, 16), 0)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    with torch.no_grad():
        start = mse_per_frame(net.rollout(frames), frames)
    for _ in range(60):
        _, errors, _ = net.encoder.run(frames)
        loss = prediction_loss(errors, net.layer_weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        end = mse_per_frame(net.rollout(frames), frames)
        copy_last = mse_per_frame(torch.cat([frames[:, :1], frames[:, :-1]], dim=1), frames)
    assert end < 0.5 * start
    assert end < copy_last
    assert net.encoder(frames).shape == (4, net.encoder.out_dim)
