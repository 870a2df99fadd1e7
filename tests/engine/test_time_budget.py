"""``train.max_time``: training ends on time, the LR schedule is laid out over the budget, and
the final evaluation follows. Time is a fake clock moved by the test: nothing sleeps."""

import math

import pytest
import torch
import yaml

from detseg.engine import ScheduleConfig, lr_factor
from detseg.engine.budget import TimeBudget
from detseg.engine.checkpoint import load_checkpoint
from detseg.engine.optim import build_scheduler
from detseg.errors import ConfigError
from detseg.experiment import load_experiment, train_from_config
from tests.engine.test_trainer import EXPERIMENT
from tests.test_progress import Clock as FakeClock


def test_budget_counts_from_start_and_carries_over_a_resume():
    clock = FakeClock()
    budget = TimeBudget(2.0, clock=clock)
    clock.now += 50
    assert budget.elapsed == 0.0 and budget.fraction() == 0.0  # not started
    budget.start()
    clock.now += 30
    budget.step()
    assert budget.fraction() == pytest.approx(0.25) and not budget.spent and budget.describe() == "0m30s/2m"
    clock.now += 30
    budget.step()  # 60 s spent at 30 s an iteration: one more ends at 90 s, within 120 s
    assert not budget.spent
    clock.now += 31
    budget.step()  # 91 s spent at 30.3 s an iteration: one more would end at 121.3 s, past 120 s
    assert budget.spent and budget.fraction() < 1.0
    resumed = TimeBudget(2.0, clock=clock)
    resumed.load_state_dict(budget.state_dict())
    resumed.start()
    assert resumed.elapsed == pytest.approx(91.0) and not resumed.spent  # no pace yet in this run
    clock.now += 29
    resumed.step()
    assert resumed.elapsed == pytest.approx(120.0) and resumed.spent and resumed.fraction() == 1.0


def test_a_slow_last_iteration_counts_more_than_the_mean():
    clock = FakeClock()
    budget = TimeBudget(2.0, clock=clock)
    budget.start()
    for _ in range(5):
        clock.now += 10
        budget.step()
    assert not budget.spent
    clock.now += 40  # the machine got slower: 90 s spent, mean 15 s (fits), last 40 s (does not)
    budget.step()
    assert budget.spent


def test_the_schedule_follows_the_time_spent_not_the_iterations():
    clock = FakeClock()
    budget = TimeBudget(1.0, clock=clock)
    cfg = ScheduleConfig(name="cosine", warmup_iters=0)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = build_scheduler(optimizer, cfg, max_iters=1000, progress=budget.fraction)
    budget.start()
    for seconds in (15, 30, 45, 60):  # one step per quarter of the budget: 4 iterations of 1000
        clock.now += 15
        optimizer.step()
        scheduler.step()
        expected = 0.1 * 0.5 * (1 + math.cos(math.pi * seconds / 60))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-12)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # the budget is spent


def test_milestones_keep_their_share_of_max_iters_and_warmup_counts_iterations():
    cfg = ScheduleConfig(name="multistep", milestones=[750], gamma=0.1, warmup_iters=10)
    assert lr_factor(20, 1000, cfg, progress=0.74) == 1.0
    assert lr_factor(20, 1000, cfg, progress=0.75) == pytest.approx(0.1)
    assert lr_factor(5, 1000, cfg, progress=0.9) == pytest.approx(0.1 * lr_factor(5, 1000, ScheduleConfig(
        name="constant", warmup_iters=10)))
    assert lr_factor(20, 1000, ScheduleConfig(name="poly", power=1.0), progress=0.25) == pytest.approx(0.75)
    assert lr_factor(20, 1000, ScheduleConfig(name="step", step_size=100), progress=0.25) == pytest.approx(0.01)


@pytest.fixture()
def timed_experiment(tmp_path):
    path = tmp_path / "exp.yaml"
    train = {**EXPERIMENT["train"], "max_iters": 1000, "max_time": 0.55,
             "schedule": {"name": "cosine", "warmup_iters": 0}}
    path.write_text(yaml.safe_dump({**EXPERIMENT, "train": train}))
    return path


def test_training_stops_when_the_budget_is_spent_then_evaluates(timed_experiment, tmp_path, monkeypatch):
    """Each step takes 10 s of a 33 s budget: three iterations of max_iters=1000 fit (a fourth
    would end at 40 s), with the LR of cosine over the time spent; the final evaluation follows."""
    import detseg.engine.trainer as trainer_module
    from detseg.models.detectors.two_stage import TwoStageDetector

    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "TimeBudget", lambda minutes: TimeBudget(minutes, clock=clock))
    original = TwoStageDetector.loss

    def ten_second_step(self, samples):
        clock.now += 10
        return original(self, samples)

    monkeypatch.setattr(TwoStageDetector, "loss", ten_second_step)
    run_dir, metrics = train_from_config(timed_experiment, [f"output_dir={tmp_path / 'run'}"], progress=False)
    state = load_checkpoint(run_dir / "last.pt")
    assert state["iteration"] == 3 and state["budget"]["elapsed"] == pytest.approx(30.0)
    assert set(metrics) >= {"AP", "AP50"}  # the final evaluation
    lines = [yaml.safe_load(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    lrs = {d["iteration"]: d["lr"] for d in lines if "split" not in d}
    assert sorted(lrs) == [1, 2, 3]
    for iteration, lr in lrs.items():  # the LR set after each step: cosine at 10 s x iteration / 33 s
        assert lr == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * iteration * 10 / 33)), abs=1e-9)


def test_max_time_is_validated_like_other_keys(timed_experiment):
    for bad in ("0", "-1"):
        with pytest.raises(ConfigError, match=r"train.max_time: -?[01](\.0)? is out of range; allowed: \(0, inf\)"):
            load_experiment(timed_experiment, [f"train.max_time={bad}"])
    with pytest.raises(ConfigError, match="train.max_time: expected"):
        load_experiment(timed_experiment, ["train.max_time=soon"])


@pytest.mark.parametrize("name", ["cosine", "poly", "multistep", "step"])
def test_at_a_steady_pace_the_time_schedule_is_the_iteration_schedule(name):
    """One step a second on a 100 s budget: 100 iterations fit, with the LRs a 100-iteration
    schedule gives; the budget only changes what a changing pace does."""
    cfg = ScheduleConfig(name=name, warmup_iters=5, milestones=[60, 85], step_size=30)
    clock = FakeClock()
    budget = TimeBudget(100 / 60, clock=clock)
    timed = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    counted = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedules = [build_scheduler(timed, cfg, 100, progress=budget.fraction), build_scheduler(counted, cfg, 100)]
    budget.start()
    iterations = 0
    while not budget.spent:
        clock.now += 1
        budget.step()
        iterations += 1
        for optimizer, scheduler in zip((timed, counted), schedules):
            optimizer.step()
            scheduler.step()
        assert timed.param_groups[0]["lr"] == pytest.approx(counted.param_groups[0]["lr"], abs=1e-12)
    assert iterations == 100
