"""A synthetic data set of circles, squares and triangles, drawn on the fly.

Each image is a pure function of ``(seed, split, index)``, so the set needs no files,
downloads or storage and every run sees the same pixels. Objects may overlap; an object
is kept only if at least half of it stays visible. Boxes, instance masks and the semantic
map are all derived from the same visible-pixel masks, so they always agree.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from detseg.data.base import DetectionDataset, Transform
from detseg.data.record import ImageRecord
from detseg.registry import DATASETS

SHAPE_CLASSES = ["circle", "square", "triangle"]
SPLITS = {"train": 0, "val": 1, "test": 2}


def draw_shapes_image(
    rng: np.random.Generator,
    image_size: int,
    max_objects: int,
    min_object_size: float,
    max_object_size: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one image.

    Returns:
        ``(image uint8[S, S, 3], labels int64[N], visible masks uint8[N, S, S])`` with the
        objects in drawing order (later ones on top).
    """
    size = image_size
    image = _noisy_background(rng, size)
    full_masks: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    labels: list[int] = []
    colours: list[np.ndarray] = []
    background_mean = image.reshape(-1, 3).mean(0)
    target = int(rng.integers(1, max_objects + 1))
    for _ in range(target * 10):  # bounded retries for objects that hide others
        if len(labels) == target:
            break
        label = int(rng.integers(len(SHAPE_CLASSES)))
        extent = rng.uniform(min_object_size, max_object_size) * size
        mask = _shape_mask(rng, label, extent, size)
        if mask.sum() < 16:
            continue
        new_visible = [v & ~mask for v in visible]
        if any(nv.sum() < 0.5 * fm.sum() for nv, fm in zip(new_visible, full_masks)):
            continue
        visible = [*new_visible, mask.copy()]
        full_masks.append(mask)
        labels.append(label)
        colours.append(_contrasting_colour(rng, background_mean))
    for mask, colour in zip(full_masks, colours):
        shade = rng.normal(0, 6, size=(int(mask.sum()), 3))
        image[mask] = np.clip(colour + shade, 0, 255).astype(np.uint8)
    masks = np.stack(visible).astype(np.uint8) if visible else np.zeros((0, size, size), np.uint8)
    return image, np.asarray(labels, dtype=np.int64), masks


def _noisy_background(rng: np.random.Generator, size: int) -> np.ndarray:
    start, end = rng.uniform(0, 255, size=(2, 3))
    ramp = np.linspace(0, 1, size)[:, None, None]
    if rng.random() < 0.5:
        ramp = ramp.transpose(1, 0, 2)
    background = start + (end - start) * ramp
    background = np.broadcast_to(background, (size, size, 3)) + rng.normal(0, 12, (size, size, 3))
    return np.clip(background, 0, 255).astype(np.uint8)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - background).sum() > 150:
            return colour
    return 255.0 - background


def _shape_mask(rng: np.random.Generator, label: int, extent: float, size: int) -> np.ndarray:
    """``bool[S, S]`` of one shape of side/diameter ``extent``, fully inside the image."""
    half = extent / 2
    cx = rng.uniform(half + 1, size - half - 1)
    cy = rng.uniform(half + 1, size - half - 1)
    canvas = np.zeros((size, size), np.uint8)
    shift = 4  # cv2 sub-pixel precision: coordinates in 1/16 pixel
    scale = 1 << shift
    if SHAPE_CLASSES[label] == "circle":
        cv2.circle(canvas, (round(cx * scale), round(cy * scale)), round(half * scale), 1,
                   thickness=-1, lineType=cv2.LINE_8, shift=shift)
    elif SHAPE_CLASSES[label] == "square":
        corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        cv2.fillPoly(canvas, [np.round((corners + [cx, cy]) * scale).astype(np.int32)], 1,
                     lineType=cv2.LINE_8, shift=shift)
    else:
        angles = np.deg2rad([-90, 30, 150]) + rng.uniform(-0.3, 0.3)
        corners = np.stack([np.cos(angles), np.sin(angles)], 1) * half * 2 / math.sqrt(3) * 1.15
        corners = np.clip(corners + [cx, cy], 0, size - 1)
        cv2.fillPoly(canvas, [np.round(corners * scale).astype(np.int32)], 1,
                     lineType=cv2.LINE_8, shift=shift)
    return canvas.astype(bool)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """``uint8[N, H, W]`` -> tight xyxy boxes ``float32[N, 4]`` around the set pixels
    (a pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)``)."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(1))
        cols = np.flatnonzero(mask.any(0))
        if rows.size:
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


@DATASETS.register("shapes")
class ShapesDataset(DetectionDataset):
    """Circles, squares and triangles on noisy coloured backgrounds.

    Labels: 0 circle, 1 square, 2 triangle. Semantic map: 0 background, ``label + 1``
    for each object's visible pixels.

    Args:
        split: ``train``, ``val`` or ``test``; each split draws from its own random stream.
        num_images: images in the split.
        image_size: side of the square images in pixels.
        max_objects: each image has 1..``max_objects`` objects.
        min_object_size: smallest object extent as a fraction of ``image_size``.
        max_object_size: largest object extent as a fraction of ``image_size``.
        seed: the random stream; the same seed gives the same images.
        transforms: applied to each record (see :mod:`detseg.data.transforms`).
    """

    class_names = SHAPE_CLASSES
    category_ids = [1, 2, 3]

    def __init__(
        self,
        split: str = "train",
        num_images: int = 256,
        image_size: int = 128,
        max_objects: int = 5,
        min_object_size: float = 0.15,
        max_object_size: float = 0.4,
        seed: int = 0,
        transforms: Transform | None = None,
    ) -> None:
        super().__init__(transforms)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got '{split}'")
        if num_images < 0 or image_size < 16 or max_objects < 1:
            raise ValueError("need num_images >= 0, image_size >= 16 and max_objects >= 1")
        if not 0 < min_object_size <= max_object_size < 1:
            raise ValueError("need 0 < min_object_size <= max_object_size < 1")
        self.split = split
        self.num_images = num_images
        self.image_size = image_size
        self.max_objects = max_objects
        self.min_object_size = min_object_size
        self.max_object_size = max_object_size
        self.seed = seed

    def __len__(self) -> int:
        return self.num_images

    def load(self, index: int) -> ImageRecord:
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        image, labels, masks = draw_shapes_image(
            rng, self.image_size, self.max_objects, self.min_object_size, self.max_object_size
        )
        sem_seg = np.zeros(image.shape[:2], np.uint8)
        for label, mask in zip(labels, masks):
            sem_seg[mask.astype(bool)] = label + 1
        return ImageRecord(
            image=image,
            image_id=index + 1,
            orig_size=image.shape[:2],
            boxes=masks_to_boxes(masks),
            labels=labels,
            ignore=np.zeros(len(labels), bool),
            masks=masks,
            sem_seg=sem_seg,
        )
