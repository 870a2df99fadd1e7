"""Optimizers and learning-rate schedules, by iteration or by the share of a time budget spent."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from detseg.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, UnitInterval


@dataclass
class OptimizerConfig:
    """``name``: sgd (momentum, nesterov), adam or adamw. ``no_decay_norm_bias`` puts
    normalisation weights and all biases in a group without weight decay."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: UnitInterval = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: NonNegativeFloat = 1e-4
    no_decay_norm_bias: bool = True


@dataclass
class ScheduleConfig:
    """Linear warmup from ``warmup_factor * lr`` over ``warmup_iters``, then:
    ``constant``; ``step`` (x ``gamma`` every ``step_size``); ``multistep`` (x ``gamma``
    at each of ``milestones``); ``cosine`` (to ``min_lr_factor * lr`` at the end);
    ``poly`` (``(1 - t/T) ** power``)."""

    name: Literal["constant", "step", "multistep", "cosine", "poly"] = "multistep"
    warmup_iters: NonNegativeInt = 0
    warmup_factor: float = 0.001
    milestones: list[int] = field(default_factory=list)
    step_size: PositiveInt = 1000
    gamma: PositiveFloat = 0.1
    power: PositiveFloat = 0.9
    min_lr_factor: UnitInterval = 0.0


def parameter_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool) -> list[dict]:
    if not no_decay_norm_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (no_decay if isinstance(module, norm_types) or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg.weight_decay, cfg.no_decay_norm_bias)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def lr_factor(iteration: int, max_iters: int, cfg: ScheduleConfig, progress: float | None = None) -> float:
    """Multiplier of the base LR at ``iteration`` (0-based).

    ``progress``: the share of a time budget spent (``train.max_time``), in [0, 1]. The decay
    is then read at ``progress x max_iters`` instead of at ``iteration``: cosine and poly
    follow ``elapsed / budget``, and milestones and step sizes keep their share of
    ``max_iters``. Warmup always counts iterations."""
    if iteration < cfg.warmup_iters:
        alpha = iteration / cfg.warmup_iters
        warmup = cfg.warmup_factor * (1 - alpha) + alpha
    else:
        warmup = 1.0
    t = iteration if progress is None else min(max(progress, 0.0), 1.0) * max_iters
    if cfg.name == "constant":
        factor = 1.0
    elif cfg.name == "step":
        factor = cfg.gamma ** (t // cfg.step_size)
    elif cfg.name == "multistep":
        factor = cfg.gamma ** sum(t >= m for m in cfg.milestones)
    elif cfg.name == "cosine":
        fraction = min(t / max(max_iters, 1), 1.0)
        factor = cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * fraction))
    else:  # poly
        factor = (1 - min(t / max(max_iters, 1), 1.0)) ** cfg.power
    return warmup * factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, max_iters: int,
                    progress: Callable[[], float] | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """The LR schedule by iteration; with ``progress`` (a function returning the share of the
    time budget spent, :class:`~detseg.engine.budget.TimeBudget.fraction`), over the budget."""
    if progress is None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, max_iters, cfg))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, max_iters, cfg, progress()))
