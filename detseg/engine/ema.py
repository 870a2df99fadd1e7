"""Exponential moving average of a model's weights (Polyak averaging, as YOLOv5 and timm keep it)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from detseg.config import NonNegativeFloat, UnitInterval


@dataclass
class EMAConfig:
    """``train.ema``: after every optimizer step ``ema = d * ema + (1 - d) * weights`` with
    ``d = decay * (1 - exp(-updates / tau))``; the ramp lets the random initial weights fade
    within the first few ``tau`` steps (``tau: 0`` keeps ``d = decay`` from the start)."""

    decay: UnitInterval = 0.9998
    tau: NonNegativeFloat = 2000.0


class ModelEMA:
    """A frozen copy of ``model`` whose floating-point parameters and buffers follow the
    model's as an exponential moving average; integer buffers (BatchNorm's counters) are copied."""

    def __init__(self, model: nn.Module, cfg: EMAConfig) -> None:
        if not 0.0 < cfg.decay < 1.0:
            raise ValueError(f"train.ema.decay must be in (0, 1), got {cfg.decay}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.cfg = cfg
        self.updates = 0

    def decay(self) -> float:
        if not self.cfg.tau:
            return self.cfg.decay
        return self.cfg.decay * (1.0 - math.exp(-self.updates / self.cfg.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay()
        averaged, copied = [], []
        for own, new in zip(self.module.state_dict().values(), model.state_dict().values()):
            (averaged if own.dtype.is_floating_point else copied).append((own, new.detach()))
        if averaged:
            torch._foreach_lerp_([o for o, _ in averaged], [n for _, n in averaged], 1.0 - d)
        for own, new in copied:
            own.copy_(new)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
