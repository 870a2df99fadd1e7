"""Semantic segmentation from an image folder and a label-map folder paired by file stem.

The layout and its reading are :mod:`detseg.data.formats.folders`'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detseg.constants import IGNORE_INDEX
from detseg.data.base import DetectionDataset, Transform
from detseg.data.formats.entries import select
from detseg.data.formats.folders import (
    label_map_size_problem,
    label_values_problem,
    read_mask_folder,
)
from detseg.data.io import read_image, read_label_map
from detseg.data.problems import SKIP_HINT, refuse_errors
from detseg.data.record import ImageRecord
from detseg.data.validation import read_skip_list
from detseg.errors import DataError
from detseg.registry import DATASETS

__all__ = ["SegFolderDataset"]


@DATASETS.register("seg_folder")
class SegFolderDataset(DetectionDataset):
    """``image_dir/<stem>.<jpg|png|...>`` with ``mask_dir/<stem>.png`` label maps.

    Label maps hold class indices ``0..C-1`` (``class_names[0]`` is usually background)
    and ``ignore_index`` for unlabeled pixels. A CamVid-style folder (``train/`` +
    ``trainannot/``, 11 classes + void 11) works with ``ignore_index: 11``; void pixels
    are mapped to 255 internally. Construction refuses images without a label map; a
    label map of another size than its image, or with values that are not classes, is an
    error when it is read.

    Args:
        image_dir: the images.
        mask_dir: label PNGs with the same stems.
        class_names: one name per class index.
        ignore_index: the label value of unlabeled pixels in the files.
        skip_files: image file names to leave out, or a file listing them.
        transforms: applied to each record.
    """

    has_instances = False

    def __init__(
        self,
        image_dir: str,
        mask_dir: str,
        class_names: list[str],
        ignore_index: int = IGNORE_INDEX,
        skip_files: str | list[str] | None = None,
        transforms: Transform | None = None,
    ) -> None:
        super().__init__(transforms)
        self.image_dir = Path(image_dir)
        self.mask_dir = Path(mask_dir)
        self.class_names = list(class_names)
        self.category_ids = list(range(len(self.class_names)))
        self.ignore_index = ignore_index
        labeled = read_mask_folder(self.image_dir, self.mask_dir, self.class_names)
        self.entries, problems = select(labeled, read_skip_list(skip_files))
        refuse_errors(problems, str(self.image_dir), hint=SKIP_HINT)

    @property
    def semantic_class_names(self) -> list[str]:
        """Label-map values are the class indices themselves."""
        return list(self.class_names)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> ImageRecord:
        entry = self.entries[index]
        image, labels = read_image(entry.path), read_label_map(entry.label_map)
        problem = (label_map_size_problem(entry, labels.shape[::-1], image.shape[1::-1])
                   or label_values_problem(entry, labels, len(self.class_names), self.ignore_index))
        if problem is not None:
            raise DataError(problem.text)
        labels = np.where(labels == self.ignore_index, IGNORE_INDEX, labels).astype(np.uint8)
        return ImageRecord.unlabeled(image, image_id=index + 1).replace(sem_seg=labels)
