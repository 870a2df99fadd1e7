"""The ``train`` section of an experiment config, and the error a training run stops with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from detseg.config import NonNegativeInt, PositiveFloat, PositiveInt, Range
from detseg.engine.ema import EMAConfig
from detseg.engine.optim import OptimizerConfig, ScheduleConfig
from detseg.errors import DetsegError


class TrainingError(DetsegError):
    """Training stopped: a non-finite loss, or a run directory that cannot be resumed."""


@dataclass
class TrainConfig:
    """The ``train`` section. Iterations count optimizer steps; each step sums the gradients
    of ``accumulate`` batches (losses divided by ``accumulate``), so it sees
    ``batch_size x accumulate`` images.

    ``max_time``: a budget in minutes (:mod:`.budget`). The run then ends on time, with its
    final evaluation after the budget, and ``max_iters`` no longer ends it: the LR schedule
    follows ``elapsed / max_time``, and ``max_iters`` only places the schedule's milestones
    and step sizes, as shares of it.

    ``ema``: keep an exponential moving average of the weights (:class:`EMAConfig`); it is
    what evaluation, ``best.pt`` and inference use. ``patience``: stop after that many
    evaluations without a better ``best_metric``. ``val_loss``: also log the loss on the
    validation set at each evaluation (one more pass over it).

    ``amp``: ``false`` (fp32), ``true`` (bf16 autocast on the CPU, fp16 + GradScaler on CUDA)
    or ``auto`` (bf16 + channels-last on a CPU with bf16 units where a trial on the first
    batch shows it pays; :mod:`.precision`).

    Under ``torchrun`` each of the ``world_size`` processes takes ``batch_size`` images, so a
    step sees ``batch_size x accumulate x world_size``. ``reference_batch``: the images per
    step ``optimizer.lr`` was tuned for; when set, the LR is scaled linearly to the
    effective batch (Goyal et al. 2017). ``sync_bn``: BatchNorm statistics over all
    processes (CUDA only). ``find_unused_parameters``: needed by DDP when a step may leave
    some parameters without gradient (e.g. a mask head on a batch without objects).

    ``freeze_backbone``: the first that many iterations train everything but the backbone
    (its weights and BatchNorm statistics stay as loaded, and its backward is skipped); -1
    freezes it for the whole run. The usual start of a fine-tuning from pretrained weights."""

    max_iters: PositiveInt = 1000
    max_time: PositiveFloat | None = None
    accumulate: PositiveInt = 1
    ema: EMAConfig | None = None
    patience: PositiveInt | None = None
    val_loss: bool = False
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    clip_grad_norm: PositiveFloat | None = None
    amp: bool | Literal["auto"] = False
    eval_every: NonNegativeInt = 0
    checkpoint_every: NonNegativeInt = 500
    best_metric: str | None = None
    log_every: PositiveInt = 20
    reference_batch: PositiveInt | None = None
    sync_bn: bool = False
    find_unused_parameters: bool = True
    freeze_backbone: Annotated[int, Range(-1)] = 0
