"""Mosaic augmentation (YOLOv4, Bochkovskiy et al. 2020; Ultralytics' ``Mosaic``): four
training images in one.

Each of the four images (the sample's own and three drawn at random from the data set) is
resized so that its longest side is ``size``, and they are laid around a random junction
point ``(cx, cy)``, uniform in ``[0, size]`` on both axes: the first image ends at the junction
(top left of it), the second starts there on the right (top right), the third below on the
left, the fourth below on the right. The output is the ``size x size`` window they are laid
in (Ultralytics' ``2 size`` canvas seen through its centre window, where its random
perspective crops it); what no image covers is ``fill``.

Objects move with their image. An object cut by the window keeps the part inside it: its
mask is cut with it, and its box becomes the box of the visible part of its mask (the box
clipped to the window when it has no mask pixels, or no masks are loaded). Objects whose
visible share is below ``min_visibility`` are dropped with their masks: the share of their
mask's pixels inside the window, or of their box's area where they have no mask pixels.
The semantic map, when there is one, is laid out the same way (``255``, ignore, where no
image is).

The transform needs the data set to draw the other three images from, and the records
it reads are the raw ones, before any transform: so it is the first transform of a
pipeline (:class:`~detseg.data.transforms.TransformPipeline` checks it), and the
transforms after it see the mosaic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from detseg.constants import IGNORE_INDEX
from detseg.data.record import ImageRecord
from detseg.registry import TRANSFORMS


class RecordSource(Protocol):
    """Where a mosaic draws its other images from: a data set's untransformed records."""

    def __len__(self) -> int: ...

    def untransformed(self, index: int) -> ImageRecord: ...


@TRANSFORMS.register("mosaic")
class Mosaic:
    """Four images around a random junction, ``size x size`` pixels out (see the module).

    Args:
        size: the output side, and the longest side each image is resized to (pixels);
            null: the longest side of the sample's own image.
        p: the chance that a sample becomes a mosaic; otherwise it passes unchanged.
        min_visibility: objects with less than this share visible are dropped.
        fill: the colour (0-255) where no image is (Ultralytics' grey 114).
    """

    closes_with_mosaic = True
    """Turned off by ``data.train.close_mosaic`` (:meth:`TransformPipeline.close_mosaic`)."""

    def __init__(self, size: int | None, p: float = 1.0, min_visibility: float = 0.1, fill: int = 114) -> None:
        if size is not None and size < 2:
            raise ValueError(f"mosaic: size must be at least 2 pixels, got {size}")
        if not 0.0 <= p <= 1.0 or not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"mosaic: p and min_visibility are in [0, 1], got {p} and {min_visibility}")
        self.size = None if size is None else int(size)
        self.p = float(p)
        self.min_visibility = float(min_visibility)
        self.fill = int(fill)

    def apply_record(self, record: ImageRecord, rng: np.random.Generator, source: RecordSource) -> ImageRecord:
        """``record`` as a mosaic with three records of ``source`` (or unchanged, with
        probability ``1 - p``); ``rng`` makes every random choice."""
        if self.p < 1.0 and rng.random() >= self.p:
            return record
        others = [source.untransformed(int(i)) for i in rng.integers(len(source), size=3)]
        side = self.side(record)
        junction = (int(rng.integers(0, side + 1)), int(rng.integers(0, side + 1)))
        return self.combine([record, *others], junction)

    def side(self, record: ImageRecord) -> int:
        """The output side for a mosaic whose first image is ``record``."""
        return self.size if self.size is not None else max(record.image.shape[:2])

    def combine(self, records: Sequence[ImageRecord], junction: tuple[int, int]) -> ImageRecord:
        """The mosaic of four ``records`` (top left, top right, bottom left, bottom right)
        around ``junction = (cx, cy)`` in output pixels."""
        if any(r.proposals is not None for r in records):
            raise ValueError("mosaic: records with precomputed proposals cannot be combined; "
                             "leave mosaic out of a proposal-based detector's transforms")
        s, (cx, cy) = self.side(records[0]), junction
        with_masks = records[0].masks is not None
        with_sem_seg = records[0].sem_seg is not None
        image = np.full((s, s, 3), self.fill, np.uint8)
        sem_seg = np.full((s, s), IGNORE_INDEX, np.uint8) if with_sem_seg else None
        parts = []
        for quadrant, record in enumerate(records):
            h, w = record.image.shape[:2]
            scale = s / max(h, w)
            new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
            left = cx - new_w if quadrant in (0, 2) else cx
            top = cy - new_h if quadrant in (0, 1) else cy
            # the part of the resized image inside the window: output [y0:y1, x0:x1]
            x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + new_w, s), min(top + new_h, s)
            if x1 > x0 and y1 > y0:
                src = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
                image[y0:y1, x0:x1] = _resize(record.image, new_w, new_h, cv2.INTER_LINEAR)[src]
                if with_sem_seg and record.sem_seg is not None:
                    sem_seg[y0:y1, x0:x1] = _resize(record.sem_seg, new_w, new_h, cv2.INTER_NEAREST)[src]
            parts.append(self._objects(record, s, (left, top), (new_w / w, new_h / h), (new_w, new_h),
                                       (x0, y0, x1, y1), with_masks))
        boxes, labels, ignore, masks = (np.concatenate(column) for column in zip(*parts))
        return records[0].replace(image=image, boxes=boxes.astype(np.float32), labels=labels, ignore=ignore,
                                  masks=masks if with_masks else None, sem_seg=sem_seg)

    def _objects(self, record: ImageRecord, s: int, offset: tuple[int, int], scale: tuple[float, float],
                 resized: tuple[int, int], window: tuple[int, int, int, int], with_masks: bool):
        """``(boxes, labels, ignore, masks)`` of ``record``'s objects that stay visible
        enough, in output pixels of an ``s x s`` mosaic; ``window`` is the image's visible part
        ``(x0, y0, x1, y1)`` in output pixels."""
        (left, top), (sx, sy), (new_w, new_h) = offset, scale, resized
        boxes = record.boxes.reshape(-1, 4).astype(np.float64) * [sx, sy, sx, sy] + [left, top, left, top]
        clipped = np.clip(boxes, 0, s)
        clipped_area = _area(clipped)
        share = np.divide(clipped_area, _area(boxes), out=np.zeros(len(boxes)), where=_area(boxes) > 0)
        out_masks = np.zeros((len(boxes), s, s), np.uint8) if with_masks else None
        if with_masks and record.masks is not None and len(boxes):
            x0, y0, x1, y1 = window
            for i, mask in enumerate(record.masks):
                full = _resize(mask, new_w, new_h, cv2.INTER_NEAREST)
                total = int(np.count_nonzero(full))
                if x1 > x0 and y1 > y0:
                    out_masks[i, y0:y1, x0:x1] = full[y0 - top:y1 - top, x0 - left:x1 - left]
                if total == 0:
                    continue  # no mask pixels: the box decides
                visible = out_masks[i]
                share[i] = np.count_nonzero(visible) / total
                if share[i] > 0 and not np.array_equal(boxes[i], clipped[i]):  # cut: the visible part's box
                    rows, cols = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
                    tight = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
                    clipped[i] = [max(clipped[i][0], tight[0]), max(clipped[i][1], tight[1]),
                                  min(clipped[i][2], tight[2]), min(clipped[i][3], tight[3])]
        keep = (share >= self.min_visibility) & (share > 0) & (_area(clipped) > 0)
        masks = out_masks[keep] if with_masks else np.zeros((0, s, s), np.uint8)
        return clipped[keep], record.labels[keep], record.ignore[keep], masks

    def __repr__(self) -> str:
        return f"Mosaic(size={self.size}, p={self.p}, min_visibility={self.min_visibility})"


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _resize(array: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(np.ascontiguousarray(array), (width, height), interpolation=interpolation)


def close_mosaic_due(last: float, iteration: int, max_iters: int, budget=None) -> bool:
    """Whether iteration ``iteration + 1`` falls in the end of a run that
    ``data.train.close_mosaic = last`` closes: below 1, the last share ``last`` of the run
    (of ``max_iters``, or of the time ``budget``, a :class:`~detseg.engine.budget.TimeBudget`);
    from 1 on, the last ``last`` iterations (of ``max_iters``, or as many as the rest of the
    budget is expected to hold at this run's mean pace so far, not before its first step)."""
    if last <= 0:
        return False
    if budget is None:
        return iteration >= (max_iters * (1 - last) if last < 1 else max_iters - last)
    if last < 1:
        return budget.elapsed >= (1 - last) * budget.seconds
    if budget.steps == 0:
        return False
    pace = (budget.elapsed - budget.spent_before) / budget.steps
    return budget.elapsed + last * pace >= budget.seconds
