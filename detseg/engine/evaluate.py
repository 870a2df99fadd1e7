"""Run a model over a data set and feed its predictions to an evaluator."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from detseg.data import DetectionDataset
from detseg.engine.distributed import all_gather_objects, dist_info
from detseg.engine.loaders import evaluation_loader
from detseg.errors import ConfigError
from detseg.models.base import Segmenter
from detseg.progress import progress as progress_bar


def this_process_share(dataset: DetectionDataset) -> Dataset:
    """Images ``rank, rank + world_size, ...`` of ``dataset``: the processes of a
    distributed run evaluate disjoint shares that together cover it once."""
    info = dist_info()
    return dataset if not info.enabled else Subset(dataset, range(info.rank, len(dataset), info.world_size))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: DetectionDataset,
    evaluator: Any,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    progress: bool = True,
    num_workers: int = 0,
) -> dict[str, float]:
    """Metrics of ``model`` on ``dataset``: detections in original-image coordinates go to
    a COCO/VOC evaluator by image id; label maps go to a segmentation evaluator with the
    ground-truth map (which must then be at the original size).

    In a distributed run each process predicts its share of the images and the evaluator
    gathers all of them before computing, so every process returns the one-process numbers.
    ``batch_size`` and ``num_workers`` are the loader settings of the split (``data.val``)."""
    was_training = model.training
    model.eval()
    evaluator.reset()
    loader = evaluation_loader(this_process_share(dataset), batch_size, num_workers)
    for samples in progress_bar(loader, desc="eval", unit="batch", leave=False, disable=not progress):
        predictions = model.predict([s.to(device) for s in samples])
        if isinstance(model, Segmenter):
            evaluator.update(predictions, [segmentation_target(sample) for sample in samples])
        else:
            evaluator.update(predictions, [s.image_id for s in samples])
    model.train(was_training)
    return evaluator.compute()


def segmentation_target(sample: Any) -> torch.Tensor:
    """The ground-truth label map a segmentation evaluator compares a prediction with: it
    must exist, at the original image size (predictions come back at that size)."""
    if sample.gt_sem_seg is None or sample.image_size != sample.orig_size:
        raise ConfigError("segmentation evaluation needs validation transforms that keep the image size "
                          "(no resizing or cropping in data.val.transforms), and data with semantic maps")
    return sample.gt_sem_seg


def check_evaluable(model: torch.nn.Module, dataset: DetectionDataset | None) -> None:
    """Refuse before training what :func:`evaluate` would refuse at its first image: a
    segmentation validation split whose transforms change the image size."""
    if dataset is not None and isinstance(model, Segmenter) and len(dataset):
        segmentation_target(dataset[0])


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module,
    dataset: DetectionDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    num_workers: int = 0,
) -> dict[str, float]:
    """The training loss terms on ``dataset``, averaged over batches, with the model in eval
    mode (BatchNorm statistics and dropout as at inference), as ``val_loss`` / ``val_<term>``."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    loader = evaluation_loader(this_process_share(dataset), batch_size, num_workers)
    for samples in loader:
        add_loss_terms(sums, model.loss([s.to(device) for s in samples]), 1.0)
    model.train(was_training)
    parts = all_gather_objects((sums, len(loader)))  # the mean over every batch of every process
    batches = max(sum(count for _, count in parts), 1)
    keys = dict.fromkeys(key for part, _ in parts for key in part)
    return {f"val_{key}": sum(part.get(key, 0.0) for part, _ in parts) / batches for key in keys}


def add_loss_terms(sums: dict[str, float], losses: dict[str, torch.Tensor], scale: float) -> None:
    """Add ``scale`` x each loss term, and their total as ``loss``, to the running ``sums``."""
    for key, value in {"loss": sum(losses.values()), **losses}.items():
        sums[key] = sums.get(key, 0.0) + float(value.detach()) * scale
