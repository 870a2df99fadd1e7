"""Compute selective-search proposals for a whole data set, once, with a per-image cache.

Each image's boxes go to ``cache_dir/<image_id>.npy`` as soon as they are computed, so a
killed run resumes where it stopped; images are spread over worker processes.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import numpy as np

from detseg.data.base import DetectionDataset
from detseg.progress import progress as progress_bar
from detseg.proposals.files import ProposalSet
from detseg.proposals.selective_search import SelectiveSearch

_worker_state: dict[str, Any] = {}


def _cache_path(cache_dir: Path, image_id: int | str) -> Path:
    return cache_dir / f"{image_id}.npy"


def _init_worker(dataset: DetectionDataset, search: SelectiveSearch, cache_dir: Path) -> None:
    import torch

    torch.set_num_threads(1)
    _worker_state.update(dataset=dataset, search=search, cache_dir=cache_dir)


def _compute(index: int) -> int | str:
    dataset, search, cache_dir = (_worker_state[k] for k in ("dataset", "search", "cache_dir"))
    record = dataset.load(index)
    boxes = search(record.image)
    target = _cache_path(cache_dir, record.image_id)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, boxes)
    tmp.replace(target)
    return record.image_id




def generate_proposals(
    dataset: DetectionDataset,
    image_ids: list[int | str],
    search: SelectiveSearch,
    cache_dir: str | Path,
    workers: int = 1,
    progress: bool = True,
) -> ProposalSet:
    """Selective search on every image of ``dataset`` (untransformed), reusing the cache.
    ``image_ids`` are the data set's ids in index order (``coco_ground_truth()["images"]``).

    Returns:
        proposals per image id, boxes xyxy in original image pixels, best ranked first.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    ids = image_ids
    todo = [i for i, image_id in enumerate(ids) if not _cache_path(cache_dir, image_id).is_file()]
    bar = progress_bar(total=len(ids), initial=len(ids) - len(todo), desc="selective search", unit="img",
                       disable=not progress)
    if workers > 1 and len(todo) > 1:
        context = multiprocessing.get_context("fork")
        with context.Pool(workers, initializer=_init_worker, initargs=(dataset, search, cache_dir)) as pool:
            for _ in pool.imap_unordered(_compute, todo, chunksize=4):
                bar.update()
    else:
        _init_worker(dataset, search, cache_dir)
        for index in todo:
            _compute(index)
            bar.update()
    bar.close()
    proposals = ProposalSet(source=str(cache_dir))
    for image_id in ids:
        proposals.add(image_id, np.load(_cache_path(cache_dir, image_id)))
    return proposals


def ground_truth_boxes(gt: dict[str, Any]) -> dict[int | str, np.ndarray]:
    """Non-crowd ground-truth boxes per image id of a COCO dict, xyxy pixels, for recall."""
    boxes: dict[int | str, list] = {image["id"]: [] for image in gt["images"]}
    for ann in gt["annotations"]:
        if not ann.get("iscrowd", 0):
            x, y, w, h = ann["bbox"]
            boxes[ann["image_id"]].append([x, y, x + w, y + h])
    return {k: np.asarray(v, np.float32).reshape(-1, 4) for k, v in boxes.items()}


__all__ = ["generate_proposals", "ground_truth_boxes"]
