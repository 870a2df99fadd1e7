"""YOLO txt data sets: ``images/`` + ``labels/`` folders and a data YAML naming the classes.

Layout (Ultralytics' convention)::

    data.yaml           path: .   train: images/train   val: images/val   names: {0: cat, 1: dog}
    images/train/x.jpg  labels/train/x.txt   (one "class cx cy w h" line per object, 0..1)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detseg.data.base import DetectionDataset, ImageSummary, Transform
from detseg.data.formats import read_yolo
from detseg.data.io import read_image
from detseg.data.record import ImageRecord
from detseg.data.validation import read_skip_list
from detseg.errors import DataError
from detseg.registry import DATASETS


@DATASETS.register("yolo_txt")
class YoloTxtDataset(DetectionDataset):
    """Boxes from YOLO txt labels, converted to ``xyxy`` absolute pixels with each image's
    size. A label file with an error (bad line, class id out of range, degenerate box)
    stops construction naming it; list such images in ``skip_files`` to leave them out
    (``tools/check_data.py`` finds them all and writes the list).

    Args:
        data_yaml: the data YAML (``path``, ``<split>``, ``names``).
        split: its key for the image folder (``train``, ``val``, ``test``).
        skip_files: image names (below the split's image folder) to leave out, or a file of them.
    """

    def __init__(self, data_yaml: str, split: str = "train", skip_files: str | list[str] | None = None,
                 transforms: Transform | None = None) -> None:
        super().__init__(transforms)
        self.data_yaml = Path(data_yaml)
        labeled = read_yolo(self.data_yaml, split)  # a missing YAML or split raises DataError
        skip = read_skip_list(skip_files)
        labeled.refuse_errors(f"{self.data_yaml} (split '{split}')", skip,
                              "tools/check_data.py lists them all and writes skip_files lists")
        self.class_names = labeled.class_names
        self.category_ids = list(range(len(self.class_names)))
        self.entries = [e for e in labeled.images if e.name not in skip]

    def __len__(self) -> int:
        return len(self.entries)

    def summary(self, index: int) -> ImageSummary:
        entry = self.entries[index]
        return ImageSummary(entry.height, entry.width, np.array([a.label for a in entry.annotations], np.int64))

    def load(self, index: int) -> ImageRecord:
        entry = self.entries[index]
        image = read_image(entry.path)
        if image.shape[:2] != (entry.height, entry.width):  # EXIF-less header vs decoded pixels
            raise DataError(f"{entry.path}: decoded size {image.shape[1]}x{image.shape[0]} differs from its "
                            f"header's {entry.width}x{entry.height}")
        anns = entry.annotations
        return ImageRecord(
            image=image,
            image_id=entry.image_id,
            orig_size=image.shape[:2],
            boxes=np.array([a.box for a in anns], np.float32).reshape(-1, 4),
            labels=np.array([a.label for a in anns], np.int64),
            ignore=np.zeros(len(anns), bool),
        )
