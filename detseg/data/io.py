"""Reading image and label files with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from detseg.errors import DataError


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file; a missing file or bad JSON raises DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {_missing(path)}: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a JSON file (not UTF-8 text)") from None


def _missing(path: Path) -> str:
    """Why ``path`` is not a readable file: ``not found`` or ``is a folder, not a file``."""
    return "is a folder, not a file" if path.is_dir() else "not found"


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> ``uint8[H, W, 3]`` RGB.

    Raises:
        DataError: the file is missing, unreadable, corrupt or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {_missing(path)}: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"cannot decode image (corrupt or not an image): {path}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"image has no pixels: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label_map(path: str | Path) -> np.ndarray:
    """A label PNG (grey or palette) -> ``uint8[H, W]`` of class indices, as stored.

    Palette PNGs (VOC ``SegmentationClass``) hold indices, not colours; PIL keeps them.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label map {_missing(path)}: {path}")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise DataError(
                    f"label map must be a single-channel or palette PNG, got mode {im.mode}: {path}"
                )
            array = np.asarray(im)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read label map {path}: {exc}") from exc
    if array.max(initial=0) > 255:
        raise DataError(f"label map has values above 255: {path}")
    return array.astype(np.uint8)


def write_label_map(path: str | Path, labels: np.ndarray, palette: list[int] | None = None) -> None:
    """Write ``uint8[H, W]`` class indices as a PNG; with ``palette``, as a palette PNG."""
    image = Image.fromarray(labels.astype(np.uint8), mode="L" if palette is None else None)
    if palette is not None:
        image = image.convert("P")
        image.putpalette(palette)
    image.save(path)
