"""Pascal VOC data sets: XML detection annotations and ``SegmentationClass`` palette PNGs.

The layout and its reading are :mod:`detseg.data.formats.voc`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from detseg.constants import IGNORE_INDEX
from detseg.data.base import DetectionDataset, ImageSummary, Transform
from detseg.data.formats.coco import coco_dict
from detseg.data.formats.entries import LabeledSet, load_image, select
from detseg.data.formats.folders import label_map_size_problem, label_values_problem
from detseg.data.formats.voc import (
    CLASS_NAMES_FILE,
    VOC_CLASSES,
    read_class_names,
    read_voc,
    read_voc_segmentation,
    voc_palette,
)
from detseg.data.io import read_image, read_label_map
from detseg.data.problems import SKIP_HINT, refuse_errors, warn_clipped
from detseg.data.record import ImageRecord
from detseg.data.validation import read_skip_list
from detseg.errors import DataError
from detseg.registry import DATASETS

__all__ = ["CLASS_NAMES_FILE", "VOC_CLASSES", "VocDataset", "VocObjects", "read_class_names", "voc_palette"]


@dataclass
class VocObjects:
    """The objects of one image as arrays: ``boxes float32[N, 4]`` xyxy absolute pixels,
    ``labels int64[N]``, ``difficult bool[N]``; ``height``, ``width`` as its XML says."""

    file_name: str
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


@DATASETS.register("voc")
class VocDataset(DetectionDataset):
    """Pascal VOC detection (``task: detection``) or semantic segmentation (``segmentation``).

    Detection: ``difficult`` objects become ignore regions (left out of AP, as in the
    devkit). Segmentation: the semantic map holds 0 = background, ``label + 1`` for
    classes, 255 = void. Image ids count from 1 in list order.

    Construction refuses (one :class:`~detseg.errors.DataError` naming them) the problems
    the VOC readers record and missing image files, i.e. what the data doctor reports;
    boxes reaching outside their image are clipped, with one warning.

    Args:
        root: the ``VOC20XX`` folder.
        split: a file name in ``ImageSets/Main`` (detection) or ``ImageSets/Segmentation``.
        task: ``detection`` or ``segmentation``.
        class_names: defaults to ``root/class_names.txt`` if present, else the 20 VOC classes.
        skip_files: image ids to leave out, or a file listing them.
        transforms: applied to each record.
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        task: Literal["detection", "segmentation"] = "detection",
        class_names: list[str] | None = None,
        skip_files: str | list[str] | None = None,
        transforms: Transform | None = None,
    ) -> None:
        super().__init__(transforms)
        self.root = Path(root)
        self.split = split
        self.task = task
        self.class_names = read_class_names(self.root, class_names)
        self.category_ids = list(range(1, len(self.class_names) + 1))
        self.has_instances = task == "detection"
        read = read_voc if self.has_instances else read_voc_segmentation
        entries, problems = select(read(self.root, split, self.class_names), read_skip_list(skip_files))
        source = f"{self.root} (split '{split}')"
        refuse_errors(problems, source, hint=SKIP_HINT)
        warn_clipped(problems, source)
        self.entries = [dataclasses.replace(e, image_id=i + 1) for i, e in enumerate(entries)]
        self.ids = [e.name for e in self.entries]
        self.objects: list[VocObjects] | None = None
        if self.has_instances:
            self.objects = [VocObjects(e.path.name, e.height, e.width,
                                       np.array([a.box for a in e.annotations], np.float32).reshape(-1, 4),
                                       np.array([a.label for a in e.annotations], np.int64),
                                       np.array([a.iscrowd for a in e.annotations], bool)) for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> ImageRecord:
        entry = self.entries[index]
        if self.objects is not None:
            objects = self.objects[index]
            return ImageRecord.unlabeled(load_image(entry), image_id=entry.image_id).replace(
                boxes=objects.boxes, labels=objects.labels, ignore=objects.difficult)
        image, labels = read_image(entry.path), read_label_map(entry.label_map)
        problem = (label_map_size_problem(entry, labels.shape[::-1], image.shape[1::-1])
                   or label_values_problem(entry, labels, self.num_classes + 1, IGNORE_INDEX))
        if problem is not None:
            raise DataError(problem.text)
        return ImageRecord.unlabeled(image, image_id=entry.image_id).replace(sem_seg=labels)

    def summary(self, index: int) -> ImageSummary:
        if self.objects is None:  # label maps: read them
            return super().summary(index)
        objects = self.objects[index]
        return ImageSummary(objects.height, objects.width, objects.labels[~objects.difficult])

    def coco_ground_truth(self) -> dict[str, Any]:
        """Detection ground truth as a COCO dict: ``difficult`` objects are ``iscrowd``."""
        if not self.has_instances:
            raise DataError(f"{self.root}: a segmentation split has no detection ground truth")
        return coco_dict(LabeledSet(self.class_names, self.entries, category_ids=self.category_ids))
