"""COCO instances JSON: boxes, polygon and RLE masks, crowd regions, sparse category ids."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from detseg.data.base import DetectionDataset, ImageSummary, Transform
from detseg.data.formats.coco import load_coco_json, read_coco
from detseg.data.formats.entries import load_image, select
from detseg.data.problems import SKIP_HINT, refuse_errors, warn_clipped
from detseg.data.record import ImageRecord
from detseg.data.validation import read_skip_list
from detseg.registry import DATASETS
from detseg.structures.masks import segmentation_to_mask

__all__ = ["CocoDataset", "load_coco_json"]  # load_coco_json: detseg.evaluation.files reads it from here


@DATASETS.register("coco")
class CocoDataset(DetectionDataset):
    """A COCO-format detection / instance segmentation set.

    Category ids (sparse, e.g. 1..90) map to contiguous labels ``0..C-1`` in increasing id
    order; ``category_ids[label]`` maps back. ``iscrowd`` annotations become ignore
    regions (``DetSample.gt_ignore``). Images without annotations are kept. Images are
    ordered by id.

    Construction refuses (one :class:`~detseg.errors.DataError` naming them) the problems
    :func:`~detseg.data.formats.read_coco` records and missing image files, i.e. what the
    data doctor reports; boxes reaching outside their image are clipped, with one warning.

    Args:
        ann_file: the instances JSON.
        image_dir: folder that ``file_name`` entries are relative to.
        with_masks: decode ``segmentation`` into instance masks (every annotation needs one).
        skip_files: ``file_name`` entries to leave out (with their annotations), or a
            file listing them (``tools/check_data.py --skip-lists`` writes it).
        transforms: applied to each record.
    """

    def __init__(
        self,
        ann_file: str,
        image_dir: str,
        with_masks: bool = True,
        skip_files: str | list[str] | None = None,
        transforms: Transform | None = None,
    ) -> None:
        super().__init__(transforms)
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.with_masks = with_masks
        self.data = load_coco_json(self.ann_file)
        labeled = read_coco(self.ann_file, self.image_dir, self.data, require_masks=with_masks)
        skip = read_skip_list(skip_files)
        entries, problems = select(labeled, skip)
        source = f"coco data set ({self.ann_file.name})"
        refuse_errors(problems, source, hint=SKIP_HINT)
        warn_clipped(problems, source)
        self.class_names = labeled.class_names
        self.category_ids = labeled.category_ids
        self.entries = sorted(entries, key=lambda e: e.image_id)
        # The ground truth for evaluation is the file as read, less the skipped images.
        listed = {im["id"] for im in self.data["images"]}
        kept = {im["id"] for im in self.data["images"] if im["file_name"] not in skip}
        self.data["images"] = [im for im in self.data["images"] if im["file_name"] not in skip]
        self.data["annotations"] = [a for a in self.data["annotations"]
                                    if a.get("image_id") not in listed - kept]

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> ImageRecord:
        entry = self.entries[index]
        image = load_image(entry)
        height, width = image.shape[:2]
        anns = entry.annotations
        masks = None
        if self.with_masks:
            masks = np.zeros((len(anns), height, width), np.uint8)
            for i, ann in enumerate(anns):
                masks[i] = segmentation_to_mask(ann.segmentation, height, width)
        return ImageRecord(
            image=image,
            image_id=int(entry.image_id),
            orig_size=(height, width),
            boxes=np.array([a.box for a in anns], np.float32).reshape(-1, 4),
            labels=np.array([a.label for a in anns], np.int64),
            ignore=np.array([a.iscrowd for a in anns], bool),
            masks=masks,
        )

    def summary(self, index: int) -> ImageSummary:
        entry = self.entries[index]
        labels = [a.label for a in entry.annotations if not a.iscrowd]
        return ImageSummary(entry.height, entry.width, np.array(labels, np.int64))

    def coco_ground_truth(self) -> dict[str, Any]:
        """The annotation file as read, so evaluation sees exactly what pycocotools would."""
        return copy.deepcopy(
            {k: self.data[k] for k in ("images", "annotations", "categories")}
        )
