"""Training precision, ``train.amp``: ``false``, ``true`` or ``auto``.

- ``false``: fp32.
- ``true``: fp16 autocast with a ``GradScaler`` on CUDA; bf16 autocast on the CPU.
- ``auto``: on a CPU with bf16 units (``amx_bf16`` or ``avx512_bf16``, read by
  :func:`detseg.inference.optimize.cpu_capabilities`), a short trial on the first batch
  times training steps in fp32 and in bf16 with channels-last weights, and bf16 +
  channels-last is kept when its step takes at most :data:`AUTO_MAX_RATIO` of fp32's;
  fp32 otherwise, and fp32 on a CPU without the units and on a GPU (where nothing was
  measured). Whether bf16 pays depends on the model as much as on the CPU: on a 2-core AMD
  EPYC with avx512_bf16 it takes the U-Net's step to 0.67x of fp32 and leaves the tiny Faster
  R-CNN's at 1.01x (``bench/amp_speed.py``, bench/README.md), hence a trial rather than a
  rule. The choice and its reason are printed and written to the run's log.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from detseg.engine.distributed import any_process

AUTO_MAX_RATIO = 0.9
"""``auto`` keeps bf16 + channels-last when its trial step is at most this fraction of
fp32's: a margin, so that timing noise on a model where bf16 gains nothing keeps fp32."""
TRIAL_STEPS = 4
"""Timed trial steps per side (after one untimed step each), interleaved; the fastest of
each side is compared, since other work on the machine can only add time."""


@dataclass(frozen=True)
class TrainingPrecision:
    """How training steps run: ``autocast`` dtype (``None``: fp32), channels-last weights,
    and a gradient scaler (fp16 on CUDA only)."""

    autocast: torch.dtype | None = None
    channels_last: bool = False
    grad_scaler: bool = False
    reason: str = "train.amp=false"

    def describe(self) -> str:
        name = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast]
        parts = [name] + (["channels-last"] if self.channels_last else []) + (["GradScaler"] if self.grad_scaler else [])
        return f"training precision: {' + '.join(parts)} ({self.reason})"


def training_precision(amp: bool | str, device: torch.device, model: nn.Module,
                       first_batch: Callable[[], list]) -> TrainingPrecision:
    """What ``train.amp`` asks for; ``auto`` trains a few trial steps on ``first_batch()``
    (samples on ``device``) and, under DDP, keeps bf16 only where every process chose it."""
    if amp != "auto":
        return fixed_precision(bool(amp), device)
    batch = first_batch()

    def step(trial_model: nn.Module, dtype: torch.dtype | None) -> None:
        trial_model.train()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            losses = trial_model.loss(batch)
        sum(losses.values()).backward()

    chosen = auto_precision(device, step, model)
    if any_process(chosen.autocast is None) and chosen.autocast is not None:
        return TrainingPrecision(reason="train.amp=auto: another process's trial chose fp32")
    return chosen


def fixed_precision(amp: bool, device: torch.device) -> TrainingPrecision:
    """``train.amp`` true or false."""
    if not amp:
        return TrainingPrecision()
    if device.type == "cuda":
        return TrainingPrecision(torch.float16, grad_scaler=True, reason="train.amp=true on CUDA")
    return TrainingPrecision(torch.bfloat16, reason=f"train.amp=true on {device.type}")


def auto_precision(device: torch.device, step: Callable[[nn.Module, torch.dtype | None], None],
                   model: nn.Module, cpu_flags: Sequence[str] | None = None) -> TrainingPrecision:
    """``train.amp=auto``: bf16 + channels-last where a trial shows it pays, else fp32.

    ``step(model, autocast_dtype)`` runs one forward + backward of a training step on a fixed
    batch (no optimizer step: the trial runs on copies of ``model``, which stays as it was).
    ``cpu_flags`` defaults to this CPU's (tests pass their own).
    """
    if device.type != "cpu":
        return TrainingPrecision(reason=f"train.amp=auto on {device.type}: fp32, nothing measured there")
    from detseg.inference.optimize import (  # the inference side reads the same flags
        BF16_FLAGS,
        cpu_capabilities,
    )

    flags = set(cpu_capabilities().flags if cpu_flags is None else cpu_flags)
    units = [flag for flag in BF16_FLAGS if flag in flags]
    if not units or not torch.backends.mkldnn.is_available():
        return TrainingPrecision(reason="train.amp=auto: this CPU has no bf16 units (amx_bf16, avx512_bf16)")
    fp32_seconds, bf16_seconds = trial_step_times(model, step)
    ratio = bf16_seconds / fp32_seconds
    pays = ratio <= AUTO_MAX_RATIO
    measured = (f"train.amp=auto: trial step {1000 * bf16_seconds:.0f} ms in bf16 + channels-last against "
                f"{1000 * fp32_seconds:.0f} ms in fp32, ratio {ratio:.2f} {'<=' if pays else '>'} {AUTO_MAX_RATIO}; "
                f"CPU has {', '.join(units)}")
    if pays:
        return TrainingPrecision(torch.bfloat16, channels_last=True, reason=measured)
    return TrainingPrecision(reason=measured)


def trial_step_times(model: nn.Module, step: Callable[[nn.Module, torch.dtype | None], None],
                     steps: int = TRIAL_STEPS) -> tuple[float, float]:
    """Fastest seconds of ``step`` on an fp32 copy and on a channels-last copy under bf16
    autocast, timed in turns (A B, B A, ...) after one untimed step each."""
    sides = [(copy.deepcopy(model), None),
             (copy.deepcopy(model).to(memory_format=torch.channels_last), torch.bfloat16)]
    times: list[list[float]] = [[], []]
    for round_index in range(steps + 1):
        for k in (0, 1) if round_index % 2 == 0 else (1, 0):
            trial_model, dtype = sides[k]
            begin = time.perf_counter()
            step(trial_model, dtype)
            trial_model.zero_grad(set_to_none=True)
            if round_index > 0:
                times[k].append(time.perf_counter() - begin)
    return min(times[0]), min(times[1])
