"""Image + label-map folders (``image_dir/<stem>.<jpg|png|...>`` with ``mask_dir/<stem>.png``):
the one reader and the one writer, and the checks of a label map against its image that
data sets (when they read one) and the data doctor share.

Label maps are ``uint8[H, W]`` PNGs (grey or palette) of class indices, as the layout
stores them (an ``ignore_index`` value marks unlabeled pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detseg.data.formats.entries import (
    IMAGE_SUFFIXES,
    ImageEntry,
    LabeledSet,
    put_image,
    put_label_map,
)
from detseg.data.problems import Problem
from detseg.errors import DataError


def read_mask_folder(image_dir: str | Path, mask_dir: str | Path, class_names: list[str]) -> LabeledSet:
    """The images of ``image_dir`` (sorted by file name; ids count from 1) paired by stem
    with ``mask_dir/<stem>.png`` (``label_map``; sizes are not read). A missing folder
    raises :class:`DataError`. Problems: images without a label map (left out)."""
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    for key, folder in (("image_dir", image_dir), ("mask_dir", mask_dir)):
        if not folder.is_dir():
            raise DataError(f"{key}: folder not found: {folder}")
    out = LabeledSet(list(class_names))
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for index, path in enumerate(images):
        label_map = mask_dir / f"{path.stem}.png"
        if not label_map.is_file():
            out.problems.append(Problem("error", "missing mask", str(label_map), f"no label map for {path.name}",
                                        image=path.name))
            continue
        out.images.append(ImageEntry(path, path.name, index + 1, label_map=label_map))
    return out


def write_mask_folder(labeled: LabeledSet, image_dir: str | Path, mask_dir: str | Path) -> None:
    """Each entry's image in ``image_dir`` (under its file name) and its label map as
    ``mask_dir/<stem>.png`` (a grey PNG from ``sem_seg``, or its ``label_map`` copied)."""
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    for entry in labeled.images:
        name = put_image(entry, image_dir)
        if not put_label_map(entry, mask_dir / f"{Path(name).stem}.png"):
            raise ValueError(f"{entry.name}: no label map to write")


def label_map_size_problem(entry: ImageEntry, map_size: tuple[int, int],
                           image_size: tuple[int, int]) -> Problem | None:
    """An error when the label map's ``(width, height)`` differs from its image's."""
    if map_size == image_size:
        return None
    return Problem("error", "mask size mismatch", str(entry.label_map),
                   f"label map is {map_size[0]}x{map_size[1]} but its image {entry.path.name} is "
                   f"{image_size[0]}x{image_size[1]}", image=entry.name)


def label_values_problem(entry: ImageEntry, values: np.ndarray, num_classes: int,
                         ignore_index: int) -> Problem | None:
    """An error when the label map holds ``values`` that are neither classes
    ``0..num_classes-1`` nor ``ignore_index``."""
    bad = np.setdiff1d(np.unique(values), [*range(num_classes), ignore_index])
    if not bad.size:
        return None
    return Problem("error", "class not in category list", str(entry.label_map),
                   f"label values {bad.tolist()} are neither classes 0..{num_classes - 1} nor ignore "
                   f"{ignore_index}", image=entry.name)
