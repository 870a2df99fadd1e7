"""The schema of an experiment config, building its parts, and running training.

Top-level sections (each validated before anything is built)::

    data:       {train: LoaderConfig, val: LoaderConfig, test: LoaderConfig}
    evaluator:  {name: coco | voc | segmentation, ...}
    model:      {name: faster_rcnn | unet, ...}
    train:      TrainConfig (max_iters, optimizer, schedule, checkpoints, ...)
    seed, device (auto | cpu | cuda), output_dir (default runs/<config path>), resume
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from omegaconf import DictConfig, open_dict

import detseg.models  # noqa: F401 - registers the models
from detseg.config import (
    Component,
    build,
    build_section,
    find_config_root,
    load_config,
    to_plain,
    validate,
)
from detseg.data import DataConfig, DetectionDataset, build_dataset
from detseg.engine.train_config import TrainConfig
from detseg.errors import ConfigError
from detseg.evaluation.base import Evaluator
from detseg.fit_data import FitConfig, adopt_fitted, fit_anchors, settle_image_size
from detseg.mask_loading import skip_unused_masks
from detseg.registry import EVALUATORS, MODELS, UnknownNameError

if TYPE_CHECKING:
    import torch

    from detseg.data import LoaderConfig
    from detseg.engine.trainer import Trainer


@dataclass
class ExperimentConfig:
    data: DataConfig
    evaluator: Component(EVALUATORS) | None = None
    model: Component(MODELS) | None = None
    train: TrainConfig | None = None
    fit: FitConfig | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output_dir: str | None = None
    resume: bool = False


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose and validate an experiment YAML.

    Raises:
        ConfigError / UnknownNameError: prefixed with the config file.
    """
    cfg = load_config(path, overrides)
    validate_experiment(cfg, str(path))
    with open_dict(cfg):  # top-level settings the YAML leaves out take the schema's defaults
        for f in dataclasses.fields(ExperimentConfig):
            if f.name not in cfg and f.default is not dataclasses.MISSING:
                cfg[f.name] = f.default
    return cfg


def apply_overrides(config: dict[str, Any], overrides: Sequence[str], source: str) -> DictConfig:
    """A resolved config (e.g. a checkpoint's) with ``key=value`` overrides merged in and
    the result validated like an experiment YAML.

    Raises:
        ConfigError / UnknownNameError: an override that is not ``key=value``, or a merged
            config that does not validate, prefixed with ``source``.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"override '{item}' is not key=value (e.g. data.val.dataset.num_images=8)")
    try:
        cfg = OmegaConf.merge(OmegaConf.create(config), OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: cannot apply overrides {' '.join(overrides)}: {exc}") from None
    if overrides:  # an untouched config was validated when the checkpoint was trained
        validate_experiment(cfg, source)
    return cfg


def validate_experiment(cfg: DictConfig, source: str) -> None:
    """Validate a whole experiment config; errors are prefixed with ``source`` (its file)."""
    try:
        validate(to_plain(cfg), ExperimentConfig, "")
    except UnknownNameError as exc:
        raise UnknownNameError(f"{source}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def build_split(cfg: DictConfig, split: str = "val") -> DetectionDataset:
    """The data set of ``data.<split>``, with its transforms (a ``fit.image_size`` left to
    the data is settled first: the transforms read it)."""
    node = cfg.data.get(split)
    if node is None:
        raise ConfigError(f"config has no data.{split} section")
    settle_image_size(cfg, say=_say)
    return build_dataset(node, f"data.{split}")


def _say(message: str) -> None:
    from detseg.engine.distributed import is_main_process

    if is_main_process():
        print(message)


def build_evaluator(cfg: DictConfig, dataset: DetectionDataset) -> Evaluator:
    """The configured evaluator, with ground truth from ``dataset``."""
    if cfg.get("evaluator") is None:
        raise ConfigError("config has no evaluator section")
    return build(cfg.evaluator, EVALUATORS, "evaluator", dataset=dataset)


def load_splits(path: str | Path, overrides: Sequence[str], splits: Sequence[str] | None) -> DictConfig:
    """:func:`load_experiment` with only the data splits ``splits`` (all of train / val /
    test the config has when None): the others are removed, so their paths (``???`` in
    ``data=coco``) need not be set.

    Raises:
        ConfigError: a split the config does not have, naming the ones it has.
    """
    raw = load_config(path, overrides)
    present = [s for s in ("train", "val", "test") if raw.get("data") and raw.data.get(s) is not None]
    unknown = [s for s in (splits or ()) if s not in present]
    if unknown:
        raise ConfigError(f"{path}: split '{unknown[0]}': the config has no data.{unknown[0]} (its splits: "
                          f"{', '.join(present) or 'none'})")
    if splits is None:
        return load_experiment(path, overrides)
    return load_experiment(path, [*overrides, *(f"~data.{s}" for s in present if s not in splits)])


def ground_truth_from_config(path: str | Path, overrides: Sequence[str] = (),
                             split: str = "val") -> dict[str, Any]:
    """COCO ground truth of the configured ``split`` (untransformed, original coordinates),
    checked by the data doctor as training data is (:func:`check_split_data`)."""
    cfg = load_splits(path, overrides, [split])
    check_split_data(cfg, split, path)
    return build_split(cfg, split).coco_ground_truth()


def check_split_data(cfg: DictConfig, split: str, path: str | Path) -> None:
    """Refuse ground truth with errors (duplicate ids, degenerate boxes, missing images...):
    the data doctor at the config's ``data.check`` level on ``data.<split>``, as training
    runs it; one error naming the first findings."""
    from detseg.data.doctor import check_config_data
    from detseg.data.formats import refuse_errors

    level = cfg.data.get("check", "brief")
    if level == "off":
        return
    for report in check_config_data(cfg, (split,), level):
        refuse_errors(report.findings, f"{path}: data.{split}", hint="data.check=off skips this check")


def default_run_dir(config_path: str | Path) -> Path:
    """``runs/<path of the config below configs/, without .yaml>``."""
    path = Path(config_path).resolve()
    root = find_config_root(path)
    try:
        name = path.relative_to(root).with_suffix("")
    except ValueError:
        name = Path(path.stem)
    return Path("runs") / name


def build_model_for(cfg: DictConfig, dataset: DetectionDataset | None = None, initialize: bool = True,
                    verbose: bool = False):
    """The configured model; its class count must match ``dataset``'s.

    ``model.num_classes`` is the number of classes the model predicts, the length of the data
    set's class list: ``dataset.class_names`` (object classes, no background) for a detector,
    ``dataset.semantic_class_names`` (label values, background included) for a segmenter. When
    the config leaves it unset, the data set's count is taken and written into ``cfg`` (so the
    resolved config saved with the run and its checkpoints builds the model without a data set).

    ``initialize``: load the initial weights the config names (see :func:`build_model`);
    ``verbose`` prints what ``model.init_from`` loaded and re-initialised."""
    from detseg.models import build_model
    from detseg.models.base import Segmenter
    from detseg.models.build import builds_segmenter

    if cfg.get("model") is None:
        raise ConfigError("config has no model section")
    if cfg.model.get("num_classes") is None and dataset is not None:
        count = (len(dataset.semantic_class_names) if builds_segmenter(cfg.model.name)
                 else dataset.num_classes)
        with open_dict(cfg):
            cfg.model.num_classes = count
    model = build_model(cfg.model, initialize=initialize)
    if verbose and getattr(model, "init_report", None) is not None:
        print(model.init_report.summary())
    if dataset is not None and getattr(model, "num_classes", None) is not None:
        names = dataset.semantic_class_names if isinstance(model, Segmenter) else dataset.class_names
        if model.num_classes != len(names):
            raise ConfigError(f"model.num_classes is {model.num_classes} but the data set has {len(names)} classes "
                              f"({', '.join(names)}); leave model.num_classes unset to take "
                              f"the data set's")
    return model


def train_from_config(path: str | Path, overrides: Sequence[str] = (), progress: bool = True,
                      stop_at: int | None = None, dry_run: bool = False) -> tuple[Path, dict[str, float]]:
    """Train the experiment at ``path``; returns the run directory and final metrics.

    ``dry_run`` builds data, evaluator and model and runs one training iteration in a
    temporary directory (deleted after), to catch config and data errors in seconds."""
    import tempfile

    from detseg.engine.distributed import barrier, init_distributed
    from detseg.engine.trainer import TrainingError, select_device, write_resolved_config

    cfg = load_experiment(path, overrides)
    if cfg.get("train") is None:
        raise ConfigError(f"{path}: no train section")
    skip_unused_masks(cfg)
    run_dir = Path(cfg.output_dir) if cfg.output_dir else default_run_dir(path)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"output_dir={run_dir}: is a file; give a folder for the run (checkpoints, metrics)")
    processes = init_distributed(cfg.device)
    if not dry_run and not cfg.resume and (run_dir / "last.pt").exists():
        raise TrainingError(f"{run_dir} already holds a run (last.pt); continue it with resume=true, "
                            f"or pick another output_dir=...")
    barrier()  # no process may see a last.pt that another has just written
    check_data_before_training(cfg, path, processes.is_main)
    device = select_device(cfg.device)
    resuming = cfg.resume and (run_dir / "last.pt").exists()  # the checkpoint holds the weights
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="detseg-dry-run-") as scratch:
            trainer, val_set, evaluator = build_trainer(cfg, scratch, device, initialize=not resuming,
                                                        progress=False, dry_run=True)
            trainer.train()
        parameters = sum(p.numel() for p in trainer.model.parameters())
        print(f"dry run: {len(trainer.train_set)} training images, {len(val_set) if val_set is not None else 0} "
              f"validation images, evaluator {cfg.evaluator.name if evaluator else 'none'}, model "
              f"{cfg.model.name} ({parameters / 1e6:.2f}M parameters); one iteration, loss "
              f"{trainer.history[-1]['loss']:.4f}. Nothing was written to {run_dir}.")
        return run_dir, {}
    trainer, _, _ = build_trainer(cfg, run_dir, device, initialize=not resuming, progress=progress)
    if processes.is_main:
        print(f"run directory: {run_dir}")
    if cfg.resume:
        trainer.resume()
    if processes.is_main:
        write_resolved_config(cfg, run_dir)
    metrics = trainer.train(stop_at=stop_at)
    return run_dir, metrics


def build_trainer(cfg: DictConfig, run_dir: str | Path, device: torch.device, initialize: bool = True,
                  progress: bool = True, dry_run: bool = False,
                  ) -> tuple[Trainer, DetectionDataset | None, Evaluator | None]:
    """The :class:`~detseg.engine.trainer.Trainer` of an experiment, with its data sets,
    evaluator and model, seeded as a run is; returns it with the validation set and
    evaluator (a dry run's trainer runs one iteration and evaluates nothing).

    ``initialize``: load the initial weights the config names (False when resuming)."""
    from detseg.engine.distributed import dist_info
    from detseg.engine.loaders import loader_settings
    from detseg.engine.trainer import Trainer, seed_everything

    processes = dist_info()
    seed_everything(cfg.seed)
    train_set = build_split(cfg, "train")
    val_set = build_split(cfg, "val") if cfg.data.get("val") is not None else None
    evaluator = build_evaluator(cfg, val_set) if val_set is not None and cfg.get("evaluator") else None
    fit_anchors(cfg, train_set, say=_say)  # before the model is built with them
    model = build_model_for(cfg, train_set, initialize=initialize,
                            verbose=processes.is_main)  # the same initial weights on every process
    if processes.enabled:
        seed_everything(cfg.seed + processes.rank)  # and their own random draws from here on
    train_cfg = build_section(TrainConfig, cfg.train, "train")
    train_loader = loader_settings(cfg.data.train, "data.train")
    val_loader = loader_settings(cfg.data.val, "data.val") if val_set is not None else None
    if dry_run:
        train_cfg.max_iters, train_cfg.eval_every, train_cfg.patience, train_cfg.max_time = 1, 0, None, None
        trainer = Trainer(model, train_cfg, train_set, train_loader, run_dir, device, cfg, seed=cfg.seed,
                          progress=False)
    else:
        trainer = Trainer(model, train_cfg, train_set, train_loader, run_dir, device, cfg, val_set, evaluator,
                          val_loader, seed=cfg.seed, progress=progress)
    return trainer, val_set, evaluator


def check_data_before_training(cfg: DictConfig, path: str | Path, verbose: bool = True) -> None:
    """Run the data doctor at ``data.check`` level on the train and val splits; refuse to
    train on errors, saying how to leave the listed images out."""
    from detseg.data.doctor import check_config_data
    from detseg.errors import DataError

    level = cfg.data.get("check", "brief")
    if level == "off":
        return
    reports = check_config_data(cfg, level=level)
    for report in reports:
        if verbose and report.checked:
            print(report.format(shown_per_kind=3))
    errors = [(r.split, f) for r in reports for f in r.errors()]
    if errors:
        splits = [r.split for r in reports if r.errors()]
        first = "; ".join(("" if len(splits) == 1 else f"data.{split}: ") + f"{f.kind}: {f.file}: {f.detail}"
                          for split, f in errors[:3])
        more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
        message = f"{path}: the data doctor found {len(errors)} error(s) in data.{'/'.join(splits)}: {first}{more}."
        if all(f.image is not None for _, f in errors):  # each error is about an image that can be left out
            message += (f" Fix them, or leave those images out: python tools/check_data.py {path} --skip-lists "
                        f"DIR writes their names, then add "
                        + " ".join(f"data.{s}.dataset.skip_files=DIR/{s}.txt" for s in splits))
        else:
            message += " Fix them"
        raise DataError(message + " (data.check=off skips this check)")


def evaluate_checkpoint(path: str | Path, checkpoint: str | Path, overrides: Sequence[str] = (),
                        progress: bool = True, report_dir: str | Path | None = None,
                        split: str = "val", precision: str = "auto",
                        runtime: str = "torch") -> dict[str, float]:
    """Metrics of a checkpoint's weights on the config's ``data.<split>`` (after overrides),
    read with that split's loader settings; ``report_dir`` also gets the plots and
    ``report.html`` (:mod:`detseg.evaluation.plots`). The model runs as
    :func:`~detseg.inference.runtime.prepare_inference` makes it for ``precision`` and
    ``runtime`` (the line saying how is printed); ``precision="fp32"`` gives training's numbers."""
    from detseg.engine.checkpoint import (
        CheckpointError,
        inference_weights,
        load_checkpoint,
        load_model_state,
    )
    from detseg.engine.distributed import init_distributed
    from detseg.engine.evaluate import evaluate
    from detseg.engine.trainer import select_device
    from detseg.inference.runtime import prepare_inference

    # Only data.<split> matters here, so a data group whose train split needs paths
    # (data=coco) can be used with just that split's paths given.
    cfg = load_splits(path, overrides, [split])
    if cfg.get("model") is None:
        raise ConfigError(f"{path}: config has no model section")
    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{checkpoint} is not a detseg training checkpoint (no model weights inside)")
    trained = ((state.get("config") or {}).get("model") or {}).get("name")
    if trained is not None and trained != cfg.model.name:
        raise CheckpointError(f"{checkpoint} holds a '{trained}' model, but {path} builds '{cfg.model.name}'; "
                              f"evaluate it with the config it was trained with (config.yaml in its run directory)")
    adopt_fitted(cfg, state.get("config"))  # a custom YAML: the image size and anchors the run fitted
    skip_unused_masks(cfg)
    processes = init_distributed(cfg.device)  # under torchrun each process evaluates a share
    check_split_data(cfg, split, path)
    dataset, evaluator, settings = build_evaluation(cfg, split)
    model = build_model_for(cfg, dataset, initialize=False)
    load_model_state(model, inference_weights(state), str(checkpoint))
    device = select_device(cfg.device)
    cache = Path(checkpoint).with_suffix(".onnxruntime")  # onnxruntime's graphs, beside the checkpoint
    runner, plan = prepare_inference(model.to(device), precision, runtime, cache, to_plain(cfg.model))
    if processes.is_main:
        print(plan.describe(), flush=True)
    metrics = evaluate(runner, dataset, evaluator, device, settings.batch_size,
                       progress=progress and processes.is_main, num_workers=settings.num_workers)
    if report_dir is not None:
        from detseg.evaluation.plots import write_evaluation_report

        write_evaluation_report(evaluator, metrics, report_dir, f"{checkpoint} on {path} data.{split}")
    return metrics


def build_evaluation(cfg: DictConfig, split: str = "val") -> tuple[DetectionDataset, Evaluator, LoaderConfig]:
    """The data set of ``data.<split>``, the evaluator on it, and the split's loader settings."""
    from detseg.engine.loaders import loader_settings

    dataset = build_split(cfg, split)
    settings = loader_settings(cfg.data[split], f"data.{split}")
    return dataset, build_evaluator(cfg, dataset), settings
