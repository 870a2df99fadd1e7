"""The training loop: iterations, checkpoints, exact resume, evaluation, logging.

The parts it is made of live next to it: the ``train`` section (:mod:`.train_config`),
device and RNG state (:mod:`.runtime`), the data loaders (:mod:`.loaders`), backbone
freezing (:mod:`.freeze`) and the metrics log (:mod:`.run_log`). Their public names stay
importable from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from detseg.config import to_plain
from detseg.data import DetectionDataset, LoaderConfig
from detseg.data.mosaic import close_mosaic_due
from detseg.engine.budget import TimeBudget
from detseg.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from detseg.engine.distributed import all_gather_objects, any_process, dist_info
from detseg.engine.ema import ModelEMA
from detseg.engine.evaluate import add_loss_terms, check_evaluable, evaluate, validation_loss
from detseg.engine.freeze import BackboneFreeze
from detseg.engine.loaders import sampling_weights, training_loader
from detseg.engine.optim import build_optimizer, build_scheduler
from detseg.engine.precision import training_precision
from detseg.engine.run_log import RunLog
from detseg.engine.runtime import (
    rng_state,
    seed_everything,
    select_device,
    set_rng_state,
    write_resolved_config,
)
from detseg.engine.train_config import TrainConfig, TrainingError
from detseg.errors import ConfigError
from detseg.models.base import Segmenter, task_name
from detseg.progress import progress


class Trainer:
    """Trains ``model`` on ``train_set`` for ``cfg.max_iters`` iterations, or for
    ``cfg.max_time`` minutes (:mod:`.budget`).

    The run directory receives ``config.yaml``, ``last.pt`` (every
    ``checkpoint_every`` iterations and at the end), ``best.pt`` (by ``best_metric``),
    ``metrics.jsonl`` and TensorBoard events.

    Args:
        model: has ``loss(samples) -> dict`` and ``predict(samples)``.
        train_set / train_loader: the training data and its loader settings (``data.train``).
        val_set, evaluator: evaluation data and metric (``None``: no evaluation).
        config: the resolved experiment config, stored in every checkpoint.
        val_loader: the loader settings of ``val_set`` (``data.val``; None: batches of 8, no workers).
        seed: seeds Python, NumPy, torch and the data stream.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        train_set: DetectionDataset,
        train_loader: LoaderConfig,
        run_dir: str | Path,
        device: torch.device,
        config: DictConfig | dict,
        val_set: DetectionDataset | None = None,
        evaluator: Any = None,
        val_loader: LoaderConfig | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.dist = dist_info()
        if cfg.sync_bn and self.dist.enabled:
            if device.type != "cuda":
                raise ConfigError("train.sync_bn needs CUDA devices (SyncBatchNorm has no CPU kernel); "
                                  "leave it false for gloo/CPU training")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(device)
        self.images_per_step = train_loader.batch_size * cfg.accumulate * self.dist.world_size
        if cfg.reference_batch:
            cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(
                cfg.optimizer, lr=cfg.optimizer.lr * self.images_per_step / cfg.reference_batch))
        self.cfg = cfg
        self.train_set = train_set
        self.train_loader = train_loader
        self.run_dir = Path(run_dir)
        self.device = device
        self.config = to_plain(config) if isinstance(config, DictConfig) else config
        self.val_set = val_set
        self.evaluator = evaluator
        if evaluator is not None:
            check_evaluable(model, val_set)  # not after hours of training
        self.val_loader = val_loader if val_loader is not None else LoaderConfig(dataset={}, batch_size=8)
        self.seed = seed
        self.progress = progress and self.dist.is_main
        if cfg.accumulate < 1:
            raise ConfigError(f"train.accumulate must be >= 1, got {cfg.accumulate}")
        if cfg.patience is not None and not (cfg.best_metric and cfg.eval_every):
            raise ConfigError("train.patience needs train.best_metric and train.eval_every: early stopping "
                              "watches the metric at each evaluation")
        self.optimizer = build_optimizer(self.model, cfg.optimizer)  # with every trainable parameter
        self.freeze = BackboneFreeze(self.model, cfg.freeze_backbone)
        self.budget = TimeBudget(cfg.max_time) if cfg.max_time else None
        self.scheduler = self._build_scheduler()
        self.precision = training_precision(cfg.amp, device, self.model, lambda: [  # auto's trial batch
            train_set[(i % len(train_set), seed)].to(device) for i in range(train_loader.batch_size)])
        if self.precision.channels_last:  # before the EMA copy and DDP see the weights
            self.model.to(memory_format=torch.channels_last)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.grad_scaler)
        self.iteration = 0
        self.best: dict[str, Any] = {"metric": cfg.best_metric, "value": None, "iteration": None}
        self.history: list[dict[str, Any]] = []
        self.ema = ModelEMA(self.model, cfg.ema) if cfg.ema is not None else None
        # The module a training step calls: DDP averages the gradients over the processes.
        self.step_module: torch.nn.Module = self.model
        if self.dist.enabled:
            self.step_module = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters)
        self.evals_since_best = 0
        self.stopped_early = self.mosaic_closed = False
        segmentation = isinstance(model, Segmenter)
        self.class_names = list(train_set.semantic_class_names if segmentation else train_set.class_names)
        self.repeat_factors, self.groups = sampling_weights(train_set, train_loader, self.progress, self._say)
        self.log = RunLog(self.run_dir, enabled=False)

    # -- checkpoints --------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "rng": rng_state(),
            "rng_per_rank": all_gather_objects(rng_state()) if self.dist.enabled else None,
            "best": self.best,
            "evals_since_best": self.evals_since_best,
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            **({"budget": self.budget.state_dict()} if self.budget is not None else {}),
            **({"mosaic_closed": True} if self.mosaic_closed else {}),
            "config": self.config,
            "meta": {"task": task_name(self.model), "class_names": self.class_names},
        }

    def resume(self) -> None:
        """Continue from ``run_dir/last.pt`` exactly where it stopped."""
        path = self.run_dir / "last.pt"
        if not path.is_file():
            raise TrainingError(f"resume=true but there is no checkpoint to resume in {self.run_dir} "
                                f"(expected {path}); run without resume=true to start afresh")
        state = load_checkpoint(path)
        load_model_state(self.model, state["model"], str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        self.best = state["best"]
        self.evals_since_best = int(state.get("evals_since_best", 0))
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        if self.budget is not None and "budget" in state:
            self.budget.load_state_dict(state["budget"])
        self.mosaic_closed = bool(state.get("mosaic_closed")) and self.train_set.close_mosaic()
        per_rank = state.get("rng_per_rank")
        if per_rank and len(per_rank) == self.dist.world_size:
            set_rng_state(per_rank[self.dist.rank])
        elif self.dist.enabled or per_rank:
            self._say(f"resume: the checkpoint was written by {len(per_rank or [0])} process(es), this run has "
                      f"{self.dist.world_size}: the data order continues exactly, random draws inside the "
                      f"model do not")
            set_rng_state(state["rng"])
        else:
            set_rng_state(state["rng"])
        self._say(f"resumed from {path} at iteration {self.iteration}")
        self._follow_changed_schedule(state.get("config", {}).get("train", {}))

    def _follow_changed_schedule(self, before: dict[str, Any]) -> None:
        """A resumed run may extend ``max_iters`` or change the schedule or base LR: say
        what changed and continue on the new schedule from the current iteration."""
        now = self.config.get("train", {})
        keys = ("max_iters", "max_time", "schedule", "optimizer")
        changes = {k: (before.get(k), now.get(k)) for k in keys if k in before and before.get(k) != now.get(k)}
        if not changes:
            return
        if self.budget is None and self.cfg.max_iters < self.iteration:
            raise TrainingError(f"train.max_iters={self.cfg.max_iters} is below the iteration this run has "
                                f"reached ({self.iteration}); give a larger max_iters to continue it")
        for key, (old, new) in changes.items():
            self._say(f"resume: train.{key} changed from {old} to {new}")
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.cfg.optimizer.lr
        self.scheduler = self._build_scheduler()
        self.scheduler.last_epoch = self.iteration - 1
        self.scheduler.step()  # sets the LR of the current iteration on the new schedule
        self._say(f"resume: following the new schedule from iteration {self.iteration} "
                  f"(lr {self.optimizer.param_groups[0]['lr']:.3g})")

    def _build_scheduler(self) -> torch.optim.lr_scheduler.LambdaLR:
        """By iteration, or over the time budget when there is one."""
        return build_scheduler(self.optimizer, self.cfg.schedule, self.cfg.max_iters,
                               self.budget.fraction if self.budget is not None else None)

    # -- the loop -----------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        """The training stream from the current iteration on."""
        return training_loader(self.train_set, self.train_loader, self.seed,
                               start=self.iteration * self.train_loader.batch_size * self.cfg.accumulate,
                               rank=self.dist.rank, num_replicas=self.dist.world_size,
                               factors=self.repeat_factors, groups=self.groups)

    def train(self, stop_at: int | None = None) -> dict[str, float]:
        """Run to ``max_iters`` (or until the time budget is spent) and return the final
        evaluation (empty without one).

        ``stop_at`` ends the run after that iteration with ``last.pt`` written, as a kill
        would (used to test resuming).
        """
        self.log = RunLog(self.run_dir, enabled=self.dist.is_main)
        budget = self.budget
        limit = self.cfg.max_iters if budget is None else float("inf")
        end = limit if stop_at is None else min(stop_at, limit)
        bar = progress(total=self.cfg.max_iters if budget is None else None, initial=self.iteration, desc="train",
                       unit="it", disable=not self.progress)
        metrics: dict[str, float] = {}
        try:
            self.model.train()
            batches = iter(self._loader())
            start_time = time.perf_counter()
            self._say(self._batch_summary())
            self._say(self.precision.describe())
            if budget is not None:
                self._say(f"time budget: train.max_time={self.cfg.max_time:g} min ({budget.describe()} spent); "
                          f"the LR schedule follows the time spent, the final evaluation comes after")
                budget.start()
            spent = self._budget_spent()
            while self.iteration < end and not self.stopped_early and not spent:
                if not self.mosaic_closed and close_mosaic_due(self.train_loader.close_mosaic, self.iteration,
                                                               self.cfg.max_iters, self.budget):
                    self.mosaic_closed = self.train_set.close_mosaic() or True
                    batches = iter(self._loader())  # its workers get the data set without mosaic
                    self._say(f"close_mosaic: no mosaic or random affine from iteration {self.iteration + 1}")
                self.freeze.before_step(self.iteration)
                losses = self._step([[s.to(self.device) for s in next(batches)] for _ in range(self.cfg.accumulate)])
                self.iteration += 1
                if budget is not None:
                    budget.step()
                lr = self.optimizer.param_groups[0]["lr"]
                timing = {"time": budget.describe()} if budget is not None else {}
                bar.set_postfix(**loss_postfix(losses), lr=f"{lr:.2e}", **timing, refresh=False)
                bar.update(1)  # after the postfix: a plain line printed by the update shows this step's losses
                spent = self._budget_spent()
                last = self.iteration == limit or spent
                if self.iteration % self.cfg.log_every == 0 or self.iteration == end or spent:
                    record = {"iteration": self.iteration, "lr": lr, **self._mean_over_processes(losses),
                              "seconds": round(time.perf_counter() - start_time, 3)}
                    self.history.append(record)
                    self.log.training(record)
                if self.cfg.eval_every and self.iteration % self.cfg.eval_every == 0 and not last:
                    metrics = self._evaluate()
                if self.iteration % self.cfg.checkpoint_every == 0 or self.iteration == end or self.stopped_early:
                    self._save("last.pt")
            if self.iteration == limit or (spent and not self.stopped_early):
                if budget is not None:
                    self._say(f"time budget: {budget.elapsed / 60:.2f} of {self.cfg.max_time:g} min spent in "
                              f"{self.iteration} iterations (one more would not fit); final evaluation")
                metrics = self._evaluate()
                self._save("last.pt")
        finally:
            bar.close()
            self.log.close()
        return metrics

    def _budget_spent(self) -> bool:
        """The time budget is spent (on any process: they stop together)."""
        return self.budget is not None and any_process(self.budget.spent)

    def _step(self, batches: list[list]) -> dict[str, float]:
        """One optimizer step on the summed gradients of ``batches`` (each loss divided by
        their number); returns the mean loss terms."""
        autocast_dtype = self.precision.autocast
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for i, samples in enumerate(batches):
            # DDP averages gradients over the processes in the last batch's backward only.
            syncing = i == len(batches) - 1 or not self.dist.enabled
            with (contextlib.nullcontext() if syncing else self.step_module.no_sync()):
                with torch.autocast(self.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    losses = self.step_module(samples, mode="loss")
                bad = [name for name, value in losses.items() if not torch.isfinite(value)]
                if any_process(bool(bad)):  # every process stops, or the others would wait forever
                    terms = (", ".join(f"loss term '{name}' is {losses[name].item()}" for name in bad)
                             or "a loss term is not finite on another process")
                    raise TrainingError(
                        f"iteration {self.iteration + 1}: {terms}; stopped. "
                        f"The last good checkpoint is {self.run_dir / 'last.pt'} "
                        f"(if one was written); lower the learning rate or enable train.clip_grad_norm"
                    )
                total = sum(losses.values())
                self.scaler.scale(total / len(batches)).backward()
            add_loss_terms(sums, losses, 1.0 / len(batches))
        if self.cfg.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return sums

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights evaluated and kept as best: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def _evaluate(self) -> dict[str, float]:
        if self.val_set is None or self.evaluator is None:
            return {}
        batch_size, workers = self.val_loader.batch_size, self.val_loader.num_workers
        metrics = evaluate(self.eval_model, self.val_set, self.evaluator, self.device, batch_size,
                           progress=self.progress, num_workers=workers)
        if self.cfg.val_loss:
            metrics.update(validation_loss(self.eval_model, self.val_set, self.device, batch_size, workers))
        self.model.train()
        self.log.evaluation(self.iteration, metrics)
        name = self.cfg.best_metric
        if name:
            if name not in metrics:
                raise ConfigError(f"train.best_metric '{name}' is not among the evaluator's metrics "
                                  f"{[k for k in metrics if '/' not in k]}")
            value = metrics[name]
            if self.best["value"] is None or value > self.best["value"]:
                self.best = {"metric": name, "value": value, "iteration": self.iteration}
                self.evals_since_best = 0
                self._save("best.pt")
            else:
                self.evals_since_best += 1
            if self.cfg.patience is not None and self.evals_since_best >= self.cfg.patience:
                self.stopped_early = True
                self._say(f"early stop at iteration {self.iteration}: {name} has not improved for "
                          f"{self.evals_since_best} evaluations (best {self.best['value']:.4f} at iteration "
                          f"{self.best['iteration']})")
        return metrics

    # -- one process or several ---------------------------------------------------------

    def _say(self, message: str) -> None:
        if self.dist.is_main:
            print(message)

    def _save(self, name: str) -> None:
        state = self.state()  # on every process: it gathers their RNG states
        if self.dist.is_main:
            save_checkpoint(state, self.run_dir / name)

    def _mean_over_processes(self, losses: dict[str, float]) -> dict[str, float]:
        if not self.dist.enabled:
            return losses
        everyone = all_gather_objects(losses)
        return {key: sum(part[key] for part in everyone) / len(everyone) for key in losses}

    def _batch_summary(self) -> str:
        loader, cfg, world = self.train_loader, self.cfg, self.dist.world_size
        line = (f"batch: {loader.batch_size} images x {cfg.accumulate} accumulated x {world} process(es) = "
                f"{self.images_per_step} images per step; ")
        if cfg.reference_batch:
            base = cfg.optimizer.lr * cfg.reference_batch / self.images_per_step
            return line + (f"lr {cfg.optimizer.lr:g} = {base:g} x {self.images_per_step}/{cfg.reference_batch} "
                           f"(linear scaling rule from train.reference_batch)")
        return line + (f"lr {cfg.optimizer.lr:g} as configured (linear scaling rule: set train.reference_batch "
                       f"to the images per step it was tuned for to scale it)")


__all__ = [
    "CheckpointError", "TrainConfig", "Trainer", "TrainingError", "rng_state", "seed_everything",
    "select_device", "set_rng_state", "write_resolved_config",
]


def loss_postfix(losses: dict[str, float]) -> dict[str, str]:
    """The progress line's loss fields: the total, then each term without its ``loss_`` prefix
    (``loss=0.41 rpn_cls=0.05 cls=0.20 ...``)."""
    return {"loss" if name == "loss" else name.removeprefix("loss_"): f"{value:.3f}"
            for name, value in losses.items()}

