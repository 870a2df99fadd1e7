"""YOLO txt data sets: ``images/`` + ``labels/`` folders and a data YAML naming the classes.

The layout and its reading are :mod:`detseg.data.formats.yolo`'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detseg.data.base import DetectionDataset, ImageSummary, Transform
from detseg.data.formats.entries import load_image, select
from detseg.data.formats.yolo import read_yolo
from detseg.data.problems import SKIP_HINT, refuse_errors, warn_clipped
from detseg.data.record import ImageRecord
from detseg.data.validation import read_skip_list
from detseg.registry import DATASETS


@DATASETS.register("yolo_txt")
class YoloTxtDataset(DetectionDataset):
    """Boxes from YOLO txt labels, converted to ``xyxy`` absolute pixels with each image's
    size (from its header). Construction refuses (one
    :class:`~detseg.errors.DataError` naming them) the problems the reader records (bad
    line, class id out of range, degenerate box, unreadable image), i.e. what the data
    doctor reports; list such images in ``skip_files`` to leave them out
    (``tools/check_data.py`` finds them all and writes the list). Boxes reaching outside
    their image are clipped, with one warning.

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
        self.entries, problems = select(labeled, read_skip_list(skip_files))
        source = f"{self.data_yaml} (split '{split}')"
        refuse_errors(problems, source, hint=SKIP_HINT)
        warn_clipped(problems, source)
        self.class_names = labeled.class_names
        self.category_ids = list(range(len(self.class_names)))

    def __len__(self) -> int:
        return len(self.entries)

    def summary(self, index: int) -> ImageSummary:
        entry = self.entries[index]
        return ImageSummary(entry.height, entry.width, np.array([a.label for a in entry.annotations], np.int64))

    def load(self, index: int) -> ImageRecord:
        entry = self.entries[index]
        image = load_image(entry)  # its decoded size must be its header's (EXIF rotation aside)
        anns = entry.annotations
        return ImageRecord(
            image=image,
            image_id=entry.image_id,
            orig_size=image.shape[:2],
            boxes=np.array([a.box for a in anns], np.float32).reshape(-1, 4),
            labels=np.array([a.label for a in anns], np.int64),
            ignore=np.zeros(len(anns), bool),
        )
