"""The gallery's pictures: labelled boxes in one colour per role, and label-map panels.

One look for every gallery (the evaluation's worst images and ``tools/browse.py``'s data
set): ground truth in green (a missed object in yellow), predictions in the colour of what
they became (:data:`COLOURS`), crowd / difficult regions in grey. Images are scaled so that
their longer side is :data:`DISPLAY_SIZE` pixels before drawing, so labels stay readable on
small images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detseg.evaluation.errors import (
    FALSE_POSITIVE,
    IGNORED,
    MISSED,
    POOR_LOCALISATION,
    TP,
    WRONG_CLASS,
)

DISPLAY_SIZE = 384
GROUND_TRUTH, CROWD = "ground_truth", "crowd"
COLOURS: dict[str, tuple[int, int, int]] = {  # RGB
    GROUND_TRUTH: (0, 190, 0),
    MISSED: (255, 215, 0),
    TP: (30, 120, 255),
    FALSE_POSITIVE: (230, 20, 20),
    WRONG_CLASS: (215, 0, 215),
    POOR_LOCALISATION: (255, 130, 0),
    IGNORED: (150, 150, 150),
    CROWD: (150, 150, 150),
}
ROLE_NAMES = {GROUND_TRUTH: "ground truth", MISSED: "missed object", TP: "true positive",
              FALSE_POSITIVE: "false positive", WRONG_CLASS: "wrong class", POOR_LOCALISATION: "poor localisation",
              IGNORED: "on a crowd region (not counted)", CROWD: "crowd / difficult region"}


@dataclass
class Mark:
    """One box to draw: ``box`` xyxy in the image's pixels, its role (a key of
    :data:`COLOURS`) and its label. Ground truth is labelled under its box, predictions
    above it, so that a prediction on its object leaves both labels readable."""

    box: Sequence[float]
    role: str
    text: str

    @property
    def below(self) -> bool:
        return self.role in (GROUND_TRUTH, MISSED, CROWD)


def display_scale(height: int, width: int) -> float:
    return DISPLAY_SIZE / max(height, width, 1)


def resized(image: np.ndarray, scale: float, nearest: bool = False) -> np.ndarray:
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def draw_marks(image: np.ndarray, marks: Sequence[Mark]) -> np.ndarray:
    """``image`` (``uint8[H, W, 3]`` RGB) scaled for display, with every mark drawn:
    ground truth first, so predictions lie on top."""
    scale = display_scale(*image.shape[:2])
    out = np.ascontiguousarray(resized(image, scale))
    height, width = out.shape[:2]
    for mark in sorted(marks, key=lambda m: not m.below):
        colour = COLOURS[mark.role]
        x1, y1, x2, y2 = (round(v * scale) for v in mark.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        if mark.text:
            _label(out, mark.text, x1, y2 + 1 if mark.below else y1 - 1, colour, mark.below, width, height)
    return out


def _label(out: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], below: bool,
           width: int, height: int) -> None:
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.42
    (tw, th), baseline = cv2.getTextSize(text, font, scale, 1)
    box_h = th + baseline + 2
    top = y if below else y - box_h
    top = min(max(top, 0), max(height - box_h, 0))
    x = min(max(x, 0), max(width - tw - 2, 0))
    cv2.rectangle(out, (x, top), (x + tw + 2, top + box_h), colour, -1)
    ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
    cv2.putText(out, text, (x + 1, top + th + 1), font, scale, ink, 1, cv2.LINE_AA)


def class_colours(n: int) -> np.ndarray:
    """``uint8[n, 3]`` distinct, stable RGB colours (golden-ratio hues); class 0, the
    background of a label map, is left clear where maps are overlaid."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    hsv = np.stack([hues * 179, np.full(n, 200), np.full(n, 255)], 1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def overlay_label_map(image: np.ndarray, labels: np.ndarray, num_classes: int, ignore_index: int,
                      alpha: float = 0.55) -> np.ndarray:
    """``image`` blended with a colour per class of ``labels`` (``[H, W]``); class 0 stays
    clear and ``ignore_index`` pixels are grey."""
    colours = class_colours(max(num_classes, 1))
    out = image.copy()
    ignored = labels == ignore_index
    fg = (labels > 0) & (labels < num_classes) & ~ignored
    out[fg] = ((1 - alpha) * out[fg] + alpha * colours[labels[fg]]).astype(np.uint8)
    out[ignored] = (0.5 * out[ignored] + 64).astype(np.uint8)
    return out


def error_map(image: np.ndarray, pred: np.ndarray, target: np.ndarray, ignore_index: int) -> np.ndarray:
    """The image in dim grey with every wrong pixel in its error kind's colour: missed
    (an object class predicted as background, class 0), false positive (background
    predicted as a class), wrong class (another object class); ignored pixels dark."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    out = np.repeat((0.35 * grey + 90).astype(np.uint8)[..., None], 3, axis=2)
    wrong = (pred != target) & (target != ignore_index)
    for kind, where in ((MISSED, wrong & (pred == 0)), (FALSE_POSITIVE, wrong & (target == 0)),
                        (WRONG_CLASS, wrong & (pred != 0) & (target != 0))):
        out[where] = COLOURS[kind]
    out[target == ignore_index] = (40, 40, 40)
    return out


def panels(images: Sequence[np.ndarray], titles: Sequence[str]) -> np.ndarray:
    """Equal-sized images side by side, each scaled for display under its title."""
    scale = display_scale(*images[0].shape[:2])
    columns = []
    for image, title in zip(images, titles, strict=True):
        shown = resized(image, scale, nearest=True)
        strip = np.full((20, shown.shape[1], 3), 255, np.uint8)
        cv2.putText(strip, title, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        columns.append(np.concatenate([strip, shown], 0))
    gap = np.full((columns[0].shape[0], 6, 3), 255, np.uint8)
    parts = [columns[0]]
    for column in columns[1:]:
        parts += [gap, column]
    return np.concatenate(parts, 1)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write ``uint8[H, W, 3]`` RGB as a PNG (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
