"""Semantic segmentation from an image folder and a label-map folder paired by file stem."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detseg.constants import IGNORE_INDEX
from detseg.data.base import DetectionDataset, Transform
from detseg.data.formats import IMAGE_SUFFIXES
from detseg.data.io import read_image, read_label_map
from detseg.data.record import ImageRecord
from detseg.data.validation import read_skip_list
from detseg.errors import DataError
from detseg.registry import DATASETS


@DATASETS.register("seg_folder")
class SegFolderDataset(DetectionDataset):
    """``image_dir/<stem>.<jpg|png|...>`` with ``mask_dir/<stem>.png`` label maps.

    Label maps hold class indices ``0..C-1`` (``class_names[0]`` is usually background)
    and ``ignore_index`` for unlabeled pixels. A CamVid-style folder (``train/`` +
    ``trainannot/``, 11 classes + void 11) works with ``ignore_index: 11``; void pixels
    are mapped to 255 internally.

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
        for folder in (self.image_dir, self.mask_dir):
            if not folder.is_dir():
                raise DataError(f"folder not found: {folder}")
        skip = read_skip_list(skip_files)
        self.image_paths = sorted(
            p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in skip
        )
        self.mask_paths = [self.mask_dir / f"{p.stem}.png" for p in self.image_paths]
        missing = [str(m) for m in self.mask_paths if not m.is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) in {self.image_dir} have no label map: {', '.join(missing[:5])}"
            )

    @property
    def semantic_class_names(self) -> list[str]:
        """Label-map values are the class indices themselves."""
        return list(self.class_names)

    def __len__(self) -> int:
        return len(self.image_paths)

    def load(self, index: int) -> ImageRecord:
        image = read_image(self.image_paths[index])
        labels = read_label_map(self.mask_paths[index])
        if labels.shape != image.shape[:2]:
            raise DataError(
                f"{self.mask_paths[index]} is {labels.shape[1]}x{labels.shape[0]} but "
                f"{self.image_paths[index].name} is {image.shape[1]}x{image.shape[0]}"
            )
        valid = [*range(len(self.class_names)), self.ignore_index]
        bad = np.setdiff1d(np.unique(labels), valid)
        if bad.size:
            raise DataError(
                f"{self.mask_paths[index]}: label values {bad.tolist()} are neither classes "
                f"0..{len(self.class_names) - 1} nor ignore_index {self.ignore_index}"
            )
        labels = np.where(labels == self.ignore_index, IGNORE_INDEX, labels).astype(np.uint8)
        return ImageRecord.unlabeled(image, image_id=index + 1).replace(sem_seg=labels)
