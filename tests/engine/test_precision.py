"""``train.amp``: the fixed choices, ``auto``'s choice logic with the CPU's flags and the
trial's timings faked both ways, and a run that trains with what ``auto`` chose."""

import math
import time

import pytest
import torch
from torch import nn

from detseg.engine.precision import (
    AUTO_MAX_RATIO,
    auto_precision,
    fixed_precision,
    trial_step_times,
)
from detseg.errors import ConfigError
from detseg.experiment import train_from_config
from tests.engine.test_trainer import experiment, train_losses  # noqa: F401  (fixture)

CPU = torch.device("cpu")


def small_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())


def timed_step(fp32_seconds: float, bf16_seconds: float):
    """A trial step that takes the given time per side (3x apart in the tests: far from the
    margin, whatever the load)."""
    def step(model, dtype):
        time.sleep(bf16_seconds if dtype == torch.bfloat16 else fp32_seconds)
    return step


def test_fixed_choices():
    assert fixed_precision(False, CPU).autocast is None
    cpu = fixed_precision(True, CPU)
    assert (cpu.autocast, cpu.channels_last, cpu.grad_scaler) == (torch.bfloat16, False, False)
    cuda = fixed_precision(True, torch.device("cuda"))
    assert (cuda.autocast, cuda.grad_scaler) == (torch.float16, True)


def test_auto_keeps_fp32_on_a_cpu_without_bf16_units():
    chosen = auto_precision(CPU, timed_step(0.02, 0.001), small_convnet(), cpu_flags=["avx2", "avx512f"])
    assert chosen.autocast is None and not chosen.channels_last
    assert "no bf16 units" in chosen.describe()


@pytest.mark.parametrize("flag", ["amx_bf16", "avx512_bf16"])
def test_auto_takes_bf16_channels_last_when_the_trial_shows_it_pays(flag):
    chosen = auto_precision(CPU, timed_step(0.03, 0.01), small_convnet(), cpu_flags=[flag])
    assert (chosen.autocast, chosen.channels_last) == (torch.bfloat16, True)
    assert flag in chosen.describe() and f"<= {AUTO_MAX_RATIO}" in chosen.describe()


def test_auto_keeps_fp32_when_bf16_is_not_faster_enough():
    slower = auto_precision(CPU, timed_step(0.01, 0.03), small_convnet(), cpu_flags=["amx_bf16"])
    assert slower.autocast is None and f"> {AUTO_MAX_RATIO}" in slower.describe()


def test_auto_is_fp32_on_a_gpu_without_a_trial():
    def never(model, dtype):
        raise AssertionError("no trial on a GPU")
    assert auto_precision(torch.device("cuda"), never, small_convnet(), cpu_flags=["amx_bf16"]).autocast is None


def test_the_trial_leaves_the_model_as_it_was():
    model = small_convnet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def step(trial_model, dtype):
        seen.append((trial_model is model, dtype, trial_model[0].weight.is_contiguous(memory_format=torch.channels_last)))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            trial_model(torch.randn(2, 3, 8, 8)).sum().backward()

    fp32_s, bf16_s = trial_step_times(model, step, steps=2)
    assert fp32_s > 0 and bf16_s > 0
    assert not any(is_model for is_model, _, _ in seen)  # copies only
    assert {(dtype, cl) for _, dtype, cl in seen} == {(None, False), (torch.bfloat16, True)}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics too
    assert model[0].weight.grad is None and model[0].weight.is_contiguous()


def test_auto_run_trains_and_says_what_it_chose(experiment, tmp_path, capsys):  # noqa: F811
    run_dir, _ = train_from_config(experiment, [f"output_dir={tmp_path / 'a'}", "train.max_iters=2", "train.amp=auto"],
                                   progress=False)
    out = capsys.readouterr().out
    assert "training precision: " in out and "train.amp=auto" in out
    assert all(math.isfinite(v) for v in train_losses(run_dir).values())


def test_an_unknown_amp_value_is_refused_naming_the_key(experiment, tmp_path):  # noqa: F811
    with pytest.raises(ConfigError, match="train.amp"):
        train_from_config(experiment, [f"output_dir={tmp_path / 'b'}", "train.amp=bf16"], progress=False)
