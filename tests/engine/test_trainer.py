"""The trainer: exact resume, refusals, non-finite losses, schedules, checkpoints."""

import json
import math

import pytest
import torch
import yaml

from detseg.engine import InfiniteSampler, ScheduleConfig, TrainingError, lr_factor
from detseg.engine.checkpoint import CheckpointError, load_checkpoint, load_model_state
from detseg.experiment import train_from_config
from detseg.models import build_model
from tests.models.test_faster_rcnn import TINY

EXPERIMENT = {
    "defaults": [{"/data": "shapes"}, {"/evaluator": "coco"}, "_self_"],
    "data": {"train": {"dataset": {"num_images": 12, "image_size": 64, "max_objects": 2}, "batch_size": 2},
             "val": {"dataset": {"num_images": 4, "image_size": 64, "max_objects": 2}, "batch_size": 2}},
    "model": TINY,
    "train": {"max_iters": 6, "log_every": 1, "checkpoint_every": 3, "best_metric": "AP50",
              "optimizer": {"lr": 0.01}, "schedule": {"name": "cosine", "warmup_iters": 2}},
    "device": "cpu",
}


@pytest.fixture()
def experiment(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT))
    return path


def train_losses(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {d["iteration"]: d["loss"] for d in lines if "split" not in d}


def test_killed_and_resumed_run_matches_an_uninterrupted_run(experiment, tmp_path):
    whole, _ = train_from_config(experiment, [f"output_dir={tmp_path / 'a'}"], progress=False)
    part, _ = train_from_config(experiment, [f"output_dir={tmp_path / 'b'}"], progress=False, stop_at=3)
    assert load_checkpoint(part / "last.pt")["iteration"] == 3
    resumed, metrics = train_from_config(experiment, [f"output_dir={tmp_path / 'b'}", "resume=true"], progress=False)
    expected, got = train_losses(whole), train_losses(resumed)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    for iteration in (4, 5, 6):
        assert got[iteration] == expected[iteration]
    state = load_checkpoint(resumed / "last.pt")
    assert state["iteration"] == 6 and state["meta"]["class_names"] == ["circle", "square", "triangle"]
    assert (resumed / "best.pt").is_file() and (resumed / "config.yaml").is_file()
    assert any(p.name.startswith("events") for p in (resumed / "tensorboard").iterdir())
    assert set(metrics) >= {"AP", "AP50"}


def test_resume_without_checkpoint_and_reuse_without_resume_are_refused(experiment, tmp_path):
    with pytest.raises(TrainingError, match="no checkpoint to resume"):
        train_from_config(experiment, [f"output_dir={tmp_path / 'x'}", "resume=true"], progress=False)
    train_from_config(experiment, [f"output_dir={tmp_path / 'y'}", "train.max_iters=1"], progress=False)
    with pytest.raises(TrainingError, match="already holds a run"):
        train_from_config(experiment, [f"output_dir={tmp_path / 'y'}"], progress=False)


def test_non_finite_loss_stops_naming_iteration_and_term(experiment, tmp_path, monkeypatch):
    from detseg.models.detectors.two_stage import TwoStageDetector

    original = TwoStageDetector.loss
    calls = {"n": 0}

    def loss_with_nan_on_second_call(self, samples):
        calls["n"] += 1
        losses = original(self, samples)
        if calls["n"] == 2:
            losses["loss_box"] = losses["loss_box"] * float("nan")
        return losses

    monkeypatch.setattr(TwoStageDetector, "loss", loss_with_nan_on_second_call)
    with pytest.raises(TrainingError, match="iteration 2: loss term 'loss_box' is nan"):
        train_from_config(experiment, [f"output_dir={tmp_path / 'n'}", "train.checkpoint_every=1"], progress=False)
    assert load_checkpoint(tmp_path / "n" / "last.pt")["iteration"] == 1  # the last good one


def test_checkpoint_of_another_model_lists_mismatched_keys():
    small = build_model(TINY)
    other = build_model({**TINY, "num_classes": 5})
    with pytest.raises(CheckpointError, match=r"another model.*shape mismatches: roi_head\.box_predictor"):
        load_model_state(other, small.state_dict(), "small.pt")
    unet = build_model({"name": "unet", "backbone": {"name": "tiny_convnet"}, "num_classes": 3,
                        "decoder": {"name": "unet", "channels": [32, 16, 8]}})
    with pytest.raises(CheckpointError, match="missing keys: .*unexpected keys: "):
        load_model_state(unet, small.state_dict(), "small.pt")


def test_schedules_by_hand():
    warm = ScheduleConfig(name="multistep", warmup_iters=10, warmup_factor=0.1, milestones=[20, 30], gamma=0.5)
    assert lr_factor(0, 40, warm) == pytest.approx(0.1)
    assert lr_factor(5, 40, warm) == pytest.approx(0.55)
    assert [lr_factor(i, 40, warm) for i in (10, 19, 20, 30)] == [1.0, 1.0, 0.5, 0.25]
    cosine = ScheduleConfig(name="cosine", min_lr_factor=0.1)
    assert lr_factor(50, 100, cosine) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(100, 100, cosine) == pytest.approx(0.1)
    assert lr_factor(25, 100, ScheduleConfig(name="poly", power=2.0)) == pytest.approx(0.75**2)
    assert lr_factor(250, 1000, ScheduleConfig(name="step", step_size=100, gamma=0.5)) == pytest.approx(0.25)
    assert math.isclose(lr_factor(7, 10, ScheduleConfig(name="constant")), 1.0)


def test_infinite_sampler_resumes_the_same_stream():
    full = InfiniteSampler(7, seed=3)
    stream = [next(it) for it in [iter(full)] for _ in range(20)]
    later = iter(InfiniteSampler(7, seed=3, start=9))
    assert [next(later) for _ in range(11)] == stream[9:]
    assert sorted(i for i, _ in stream[:7]) == list(range(7))
    assert len({s for _, s in stream}) == 20
    ranks = [iter(InfiniteSampler(7, seed=3, rank=r, num_replicas=2)) for r in range(2)]
    interleaved = [next(ranks[k % 2]) for k in range(10)]
    assert interleaved == stream[:10]


def test_parameter_groups_leave_norms_and_biases_undecayed():
    from detseg.engine.optim import OptimizerConfig, build_optimizer

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = build_optimizer(model, OptimizerConfig(name="sgd", weight_decay=0.1))
    decayed, plain = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [torch.Size([4, 3, 3, 3])]
    assert len(plain["params"]) == 3 and plain["weight_decay"] == 0.0


def test_bf16_autocast_with_gradient_clipping_trains_on_cpu(experiment, tmp_path):
    full, _ = train_from_config(experiment, [f"output_dir={tmp_path / 'f'}", "train.max_iters=2"], progress=False)
    mixed, _ = train_from_config(experiment, [f"output_dir={tmp_path / 'm'}", "train.max_iters=2", "train.amp=true",
                                              "train.clip_grad_norm=1.0"], progress=False)
    fp32, bf16 = train_losses(full), train_losses(mixed)
    assert all(math.isfinite(v) for v in bf16.values())
    assert bf16[1] != fp32[1]  # autocast really ran in bfloat16 ...
    assert bf16[1] == pytest.approx(fp32[1], abs=0.05)  # ... and computed the same loss
