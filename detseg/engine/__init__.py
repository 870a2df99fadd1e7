"""Training and evaluation engine."""

from detseg.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from detseg.engine.evaluate import evaluate
from detseg.engine.optim import (
    OptimizerConfig,
    ScheduleConfig,
    build_optimizer,
    build_scheduler,
    lr_factor,
)
from detseg.engine.sampler import InfiniteSampler
from detseg.engine.trainer import TrainConfig, Trainer, TrainingError, select_device

__all__ = [
    "CheckpointError",
    "InfiniteSampler",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "load_checkpoint",
    "load_model_state",
    "lr_factor",
    "save_checkpoint",
    "select_device",
]
