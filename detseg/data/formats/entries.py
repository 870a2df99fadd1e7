"""The neutral form every format is read into and written from, and what all formats share.

Boxes are ``xyxy`` in absolute pixels, continuous coordinates (a box over pixels 0..9 is
``[0, 10)``). Label maps are ``uint8[H, W]`` class indices as the format stores them.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from detseg.data.io import read_image, write_label_map
from detseg.data.problems import Problem, refuse_errors
from detseg.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Annotation:
    """One object.

    Attributes:
        box: ``float64[4]`` xyxy absolute pixels.
        label: index into :attr:`LabeledSet.class_names`.
        iscrowd: a region to ignore: COCO ``iscrowd``, VOC ``difficult``.
        segmentation: COCO polygons or RLE (image-sized), when the source has a mask.
        area: COCO ``area`` to write; None: the box's.
    """

    box: np.ndarray
    label: int
    iscrowd: bool = False
    segmentation: Any = None
    area: float | None = None


@dataclass
class ImageEntry:
    """One image, its objects and (segmentation layouts) its label map.

    Attributes:
        path: the image file; for an entry with ``pixels``, only its name counts (the name
            writers give the file).
        name: as the data set names it (COCO ``file_name``, VOC id, YOLO path below the
            split's image folder, file name in an image folder): what ``skip_files`` lists.
        image_id: the data set's id for it.
        width, height: in pixels, as the annotation says; 0 where the format stores no
            size (label-map layouts: read the image).
        label_map: the label-map PNG of segmentation layouts.
        pixels: ``uint8[H, W, 3]`` RGB for writers to encode, when there is no file to copy.
        sem_seg: ``uint8[H, W]`` label map for writers to write, when there is no file to copy.
    """

    path: Path
    name: str
    image_id: int
    width: int = 0
    height: int = 0
    annotations: list[Annotation] = field(default_factory=list)
    label_map: Path | None = None
    pixels: np.ndarray | None = None
    sem_seg: np.ndarray | None = None


@dataclass
class LabeledSet:
    """What a reader read: class names, images, and every problem it met.

    ``category_ids[label]``: the format's id of each class (COCO's may be sparse); None:
    ``1..C``. An entry with an error problem is left out of ``images`` or keeps only its
    valid objects; a box reaching outside its image is clipped (with a warning problem).
    """

    class_names: list[str]
    images: list[ImageEntry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    category_ids: list[int] | None = None

    def objects_per_class(self) -> dict[str, int]:
        counts = Counter(a.label for im in self.images for a in im.annotations)
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    def refuse_errors(self, source: str, skip: Collection[str] = (), hint: str = "") -> None:
        """:func:`~detseg.data.problems.refuse_errors` of this set's problems."""
        refuse_errors(self.problems, source, skip, hint)


def select(labeled: LabeledSet, skip: Collection[str] = ()) -> tuple[list[ImageEntry], list[Problem]]:
    """The entries not in ``skip`` and the problems that concern them: the reader's, and
    image files that are missing. What a data set refuses on and the data doctor reports
    (the doctor adds what only reading the pixels finds)."""
    entries = [e for e in labeled.images if e.name not in skip]
    problems = [p for p in labeled.problems if p.image is None or p.image not in skip]
    problems += [Problem("error", "missing image", str(e.path), "image file not found", image=e.name)
                 for e in entries if not e.path.is_file()]
    return entries, problems


def image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the file header, or None when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def size_problem(entry: ImageEntry, width: int, height: int) -> Problem | None:
    """An error when the image file's ``width`` x ``height`` differs from the annotation's."""
    if (width, height) == (entry.width, entry.height):
        return None
    return Problem("error", "image size mismatch", str(entry.path),
                   f"the file is {width}x{height}, the annotation says {entry.width}x{entry.height}", image=entry.name)


def load_image(entry: ImageEntry) -> np.ndarray:
    """The entry's image, ``uint8[H, W, 3]`` RGB; raises :class:`DataError` when it cannot be
    decoded or its size differs from the annotation's."""
    image = read_image(entry.path)
    problem = size_problem(entry, image.shape[1], image.shape[0])
    if problem is not None:
        raise DataError(problem.text)
    return image


def put_image(entry: ImageEntry, folder: Path, name: str | None = None) -> str:
    """Put the entry's image in ``folder`` as ``name`` (default: its file name): its
    ``pixels`` encoded (JPEG quality 95), or its file copied. Returns the name."""
    name = name or entry.path.name
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry.pixels is not None:
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if target.suffix.lower() in (".jpg", ".jpeg") else []
        if not cv2.imwrite(str(target), cv2.cvtColor(entry.pixels, cv2.COLOR_RGB2BGR), params):
            raise OSError(f"cannot write {target}")
    elif entry.path.resolve() != target.resolve():
        shutil.copy2(entry.path, target)
    return name


def put_label_map(entry: ImageEntry, target: Path, palette: list[int] | None = None) -> bool:
    """Write the entry's ``sem_seg`` (as a palette PNG with ``palette``) or copy its
    ``label_map`` file to ``target``; False when it has neither."""
    if entry.sem_seg is None and entry.label_map is None:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry.sem_seg is not None:
        write_label_map(target, entry.sem_seg, palette)
    elif entry.label_map.resolve() != target.resolve():
        shutil.copy2(entry.label_map, target)
    return True


def number(value: float) -> str:
    """A coordinate for a text format: whole numbers without decimals, others exactly."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
