"""Build data sets and DataLoaders from the ``data`` section of a config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from detseg.config import (
    Component,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    UnitInterval,
    build,
    to_plain,
    validate,
)
from detseg.data.base import DetectionDataset
from detseg.data.transforms import build_transforms
from detseg.errors import ConfigError, DataError
from detseg.proposals.files import ProposalAttacher
from detseg.registry import DATASETS, TRANSFORMS
from detseg.structures import DetSample


@dataclass
class LoaderConfig:
    """One split: its data set, transforms and loader settings.

    ``proposals`` names a proposal file (``.json`` or Detectron2 ``.pkl``, see
    :mod:`detseg.proposals.files`) whose boxes are attached to each image before the
    transforms, for detectors with a ``precomputed`` or ``selective_search`` proposal source.

    ``cache``: keep each decoded image in memory after its first load
    (:meth:`~detseg.data.base.DetectionDataset.keep_records`), for data sets of a few hundred
    images whose JPEG decoding costs a share of each step (``bench/loader_speed.py``).

    Training split only: ``repeat_factor_threshold`` turns on class-balanced repeat-factor
    sampling (LVIS: images with a class found in fewer than this fraction of the images
    are repeated, see :func:`detseg.engine.sampler.repeat_factors`; 0.001 in LVIS, try
    0.1-0.3 on small sets); ``group_by_aspect_ratio`` makes every batch all landscape or
    all portrait images, so that less of each padded batch is padding; ``close_mosaic``:
    the end of the run goes without the ``mosaic`` and ``random_affine`` transforms
    (Ultralytics' ``close_mosaic``, there in epochs: the last images the model sees look like
    the evaluation's): a share below 1 of the run (``0.1``: its last tenth, of ``max_iters`` or
    of ``train.max_time``), or a whole number of last iterations (with ``train.max_time``: as
    many as the rest of the budget is expected to hold at the run's mean pace).
    """

    dataset: Component(DATASETS)
    transforms: list[Component(TRANSFORMS)] = field(default_factory=list)
    batch_size: PositiveInt = 2
    shuffle: bool = False
    num_workers: NonNegativeInt = 0
    drop_last: bool = False
    proposals: str | None = None
    repeat_factor_threshold: UnitInterval | None = None
    group_by_aspect_ratio: bool = False
    close_mosaic: NonNegativeFloat = 0
    cache: bool = False


@dataclass
class DataConfig:
    """The ``data`` section: a loader per split; any of them may be absent.

    ``data_root`` and ``class_names`` are places for a path and a class list that split
    nodes share by interpolation, e.g. ``root: ${data.data_root}``. ``check``: what the
    data doctor (:mod:`detseg.data.doctor`) reads before training starts."""

    data_root: str | None = None
    check: Literal["brief", "full", "off"] = "brief"
    class_names: list[str] | None = None
    train: LoaderConfig | None = None
    val: LoaderConfig | None = None
    test: LoaderConfig | None = None


def collate_samples(samples: list[DetSample]) -> list[DetSample]:
    """Batches stay lists of samples: images differ in size until the model pads them."""
    return list(samples)


def build_dataset(loader_cfg: Any, path: str = "data.val") -> DetectionDataset:
    """Build the data set of one split (with its transforms) from a ``LoaderConfig`` node."""
    loader_cfg = to_plain(loader_cfg)
    validate(loader_cfg, LoaderConfig, path)
    for key in ("repeat_factor_threshold", "group_by_aspect_ratio"):
        if loader_cfg.get(key) and not path.endswith(".train"):
            raise ConfigError(f"{path}.{key}: a sampling option of the training split (data.train) only; "
                              f"evaluation reads every image once")
    transforms = build_transforms(loader_cfg.get("transforms", []), f"{path}.transforms")
    if transforms.has_mosaic and not path.endswith(".train"):
        raise ConfigError(f"{path}.transforms: mosaic and random_affine are training augmentations; "
                          f"evaluation sees each image as it is (move them to data.train.transforms)")
    if loader_cfg.get("close_mosaic") and not path.endswith(".train"):
        raise ConfigError(f"{path}.close_mosaic: an option of the training split (data.train) only")
    close = loader_cfg.get("close_mosaic") or 0
    if close >= 1 and close != int(close):
        raise ConfigError(f"{path}.close_mosaic: {close} is neither a share of the run (below 1) nor a whole "
                          f"number of iterations")
    if loader_cfg.get("close_mosaic") and not transforms.has_mosaic:
        raise ConfigError(f"{path}.close_mosaic: {loader_cfg['close_mosaic']}, but {path}.transforms has no mosaic "
                          f"or random_affine to turn off")
    if loader_cfg.get("proposals") and transforms.mosaic is not None:
        raise ConfigError(f"{path}.transforms: mosaic cannot combine images with precomputed proposals "
                          f"({path}.proposals); leave it out for this detector")
    dataset = build(loader_cfg["dataset"], DATASETS, f"{path}.dataset", transforms=transforms)
    if len(dataset) == 0:
        raise DataError(f"{path}: the data set has no images: {describe_source(loader_cfg['dataset'])}")
    if loader_cfg.get("proposals"):
        dataset.proposals = ProposalAttacher(loader_cfg["proposals"])
    if loader_cfg.get("cache"):
        dataset.keep_records()
    return dataset


def describe_source(node: dict[str, Any]) -> str:
    """Where a data set node reads from, for messages: its file or folder and split."""
    keys = ("ann_file", "data_yaml", "root", "image_dir", "split", "num_images", "skip_files")
    parts = [f"{k}={node[k]}" for k in keys if node.get(k) is not None]
    return f"{node.get('name')} ({', '.join(parts)})" if parts else str(node.get("name"))


def build_dataloader(
    loader_cfg: Any,
    path: str = "data.val",
    dataset: DetectionDataset | None = None,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader yielding ``list[DetSample]`` batches for one split."""
    plain = to_plain(loader_cfg)
    validate(plain, LoaderConfig, path)
    settings = LoaderConfig(**plain)
    dataset = dataset if dataset is not None else build_dataset(plain, path)
    return DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=settings.shuffle,
        num_workers=settings.num_workers,
        drop_last=settings.drop_last,
        collate_fn=collate_samples,
        generator=generator,
        persistent_workers=settings.num_workers > 0,
    )
