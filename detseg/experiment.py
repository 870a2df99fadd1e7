"""The schema of an experiment config, and building its parts.

Top-level sections (each validated before anything is built)::

    data:       {train: LoaderConfig, val: LoaderConfig, test: LoaderConfig}
    evaluator:  {name: coco | voc | segmentation, ...}
    seed:       int
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from detseg.config import Component, build, load_config, to_plain, validate
from detseg.data import DataConfig, DetectionDataset, build_dataset
from detseg.errors import ConfigError
from detseg.evaluation.base import Evaluator
from detseg.registry import EVALUATORS, UnknownNameError


@dataclass
class ExperimentConfig:
    data: DataConfig
    evaluator: Component(EVALUATORS) | None = None
    seed: int = 0


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose and validate an experiment YAML.

    Raises:
        ConfigError / UnknownNameError: prefixed with the config file.
    """
    cfg = load_config(path, overrides)
    try:
        validate(to_plain(cfg), ExperimentConfig, "")
    except UnknownNameError as exc:
        raise UnknownNameError(f"{path}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cfg


def build_split(cfg: DictConfig, split: str = "val") -> DetectionDataset:
    """The data set of ``data.<split>``, with its transforms."""
    node = cfg.data.get(split)
    if node is None:
        raise ConfigError(f"config has no data.{split} section")
    return build_dataset(node, f"data.{split}")


def build_evaluator(cfg: DictConfig, dataset: DetectionDataset) -> Evaluator:
    """The configured evaluator, with ground truth from ``dataset``."""
    if cfg.get("evaluator") is None:
        raise ConfigError("config has no evaluator section")
    return build(cfg.evaluator, EVALUATORS, "evaluator", dataset=dataset)


def ground_truth_from_config(path: str | Path, overrides: Sequence[str] = (),
                             split: str = "val") -> dict[str, Any]:
    """COCO ground truth of the configured ``split`` (untransformed, original coordinates)."""
    return build_split(load_experiment(path, overrides), split).coco_ground_truth()
