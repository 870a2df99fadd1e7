"""Selective search (Uijlings et al., IJCV 2013): class-agnostic region proposals from the
hierarchical grouping of an over-segmentation.

The initial over-segmentation is scikit-image's Felzenszwalb-Huttenlocher graph
segmentation; the grouping is ours. For each *strategy* (a colour space, a segmentation
scale ``k`` and a set of similarities) the two most similar neighbouring regions are
merged until one region is left per connected component, and the box of every region ever
formed is a proposal. Proposals of all strategies are ranked as in the paper (a region's
position in its hierarchy, 1 for the top, times a random number) and de-duplicated.

Similarities, all in ``[0, 1]``:

- colour: intersection of L1-normalised 25-bin histograms per channel;
- texture: intersection of 10-bin histograms of Gaussian derivatives (sigma 1) in 8
  orientations per channel;
- size: ``1 - (size_i + size_j) / size_image``, so small regions merge first;
- fill: ``1 - (size_of_joint_box - size_i - size_j) / size_image``, so regions that fill
  each other's gaps merge first.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from skimage.segmentation import felzenszwalb

from detseg.errors import ConfigError

COLOUR_BINS = 25
TEXTURE_BINS = 10
ORIENTATIONS = 8
SIMILARITIES = "ctsf"  # colour, texture, size, fill


@dataclass(frozen=True)
class Strategy:
    """One grouping run: ``colour_space`` in ``rgb|hsv|lab``, Felzenszwalb ``scale`` k and
    the ``similarities`` used, as letters of ``ctsf``."""

    colour_space: str
    scale: float
    similarities: str


def strategies(colour_spaces: Sequence[str], scales: Sequence[float], similarities: Sequence[str]) -> list[Strategy]:
    """Every combination of the three lists. The defaults of :class:`SelectiveSearch` are
    the paper's "Selective Search Fast": HSV and Lab, k = 50 and 100, similarities
    C+T+S+F and T+S+F (8 strategies)."""
    return [Strategy(space, k, sims) for space in colour_spaces for k in scales for sims in similarities]


def _convert(image: np.ndarray, colour_space: str) -> np.ndarray:
    """``uint8[H, W, 3]`` RGB -> ``float32[H, W, 3]`` in ``colour_space`` scaled to ``[0, 1]``."""
    if colour_space == "rgb":
        return image.astype(np.float32) / 255.0
    if colour_space == "hsv":
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
        return hsv / np.array([180.0, 255.0, 255.0], np.float32)
    if colour_space == "lab":
        return cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
    raise ConfigError(f"selective search colour_space must be 'rgb', 'hsv' or 'lab', got {colour_space!r}")


def _histograms(labels: np.ndarray, quantised: np.ndarray, bins: int, num_regions: int) -> np.ndarray:
    """Per-region histograms of every channel of ``quantised`` (``int[H, W, D]`` in
    ``0..bins-1``), concatenated and L1-normalised: ``float32[R, D * bins]``."""
    flat_labels = labels.reshape(-1)
    channels = quantised.reshape(-1, quantised.shape[-1])
    hist = np.empty((num_regions, channels.shape[1] * bins), np.float32)
    for d in range(channels.shape[1]):
        counts = np.bincount(flat_labels * bins + channels[:, d], minlength=num_regions * bins)
        hist[:, d * bins:(d + 1) * bins] = counts.reshape(num_regions, bins)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1)


def _texture_quantised(image: np.ndarray) -> np.ndarray:
    """Gaussian-derivative responses in 8 orientations per channel, half-wave rectified and
    quantised to 10 bins: ``int[H, W, 3 * 8]``."""
    maps = []
    for c in range(image.shape[2]):
        gy = ndimage.gaussian_filter(image[:, :, c], sigma=1.0, order=(1, 0))
        gx = ndimage.gaussian_filter(image[:, :, c], sigma=1.0, order=(0, 1))
        for k in range(ORIENTATIONS):
            angle = 2 * np.pi * k / ORIENTATIONS
            response = np.maximum(np.cos(angle) * gx + np.sin(angle) * gy, 0)
            top = response.max()
            scaled = response / top if top > 0 else response
            maps.append(np.minimum((scaled * TEXTURE_BINS).astype(np.int64), TEXTURE_BINS - 1))
    return np.stack(maps, axis=-1)


def _neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """``int[P, 2]`` unique ``(i, j)``, ``i < j``, of regions touching horizontally,
    vertically or diagonally."""
    pairs = [
        (labels[:, :-1], labels[:, 1:]),
        (labels[:-1, :], labels[1:, :]),
        (labels[:-1, :-1], labels[1:, 1:]),
        (labels[:-1, 1:], labels[1:, :-1]),
    ]
    a = np.concatenate([p[0].reshape(-1) for p in pairs])
    b = np.concatenate([p[1].reshape(-1) for p in pairs])
    different = a != b
    edges = np.stack([np.minimum(a, b)[different], np.maximum(a, b)[different]], axis=1)
    return np.unique(edges, axis=0)


class _Regions:
    """Region statistics, growing by one row per merge (rows of merged regions stay)."""

    def __init__(self, labels: np.ndarray, colour: np.ndarray, texture: np.ndarray, num_regions: int):
        capacity = 2 * num_regions
        ys, xs = np.indices(labels.shape)
        flat = labels.reshape(-1)
        self.sizes = np.zeros(capacity, np.float64)
        self.sizes[:num_regions] = np.bincount(flat, minlength=num_regions)
        self.boxes = np.zeros((capacity, 4), np.float64)
        self.boxes[:num_regions, 0] = ndimage.minimum(xs, labels, np.arange(num_regions))
        self.boxes[:num_regions, 1] = ndimage.minimum(ys, labels, np.arange(num_regions))
        self.boxes[:num_regions, 2] = ndimage.maximum(xs, labels, np.arange(num_regions)) + 1
        self.boxes[:num_regions, 3] = ndimage.maximum(ys, labels, np.arange(num_regions)) + 1
        self.colour = np.zeros((capacity, colour.shape[1]), np.float32)
        self.colour[:num_regions] = colour
        self.texture = np.zeros((capacity, texture.shape[1]), np.float32)
        self.texture[:num_regions] = texture
        self.count = num_regions

    def similarity(self, i: int | np.ndarray, j: np.ndarray, which: str, image_size: float) -> np.ndarray:
        """Summed similarities ``which`` between region(s) ``i`` and regions ``j``."""
        total = np.zeros(len(j), np.float64)
        if "c" in which:
            total += np.minimum(self.colour[i], self.colour[j]).sum(-1)
        if "t" in which:
            total += np.minimum(self.texture[i], self.texture[j]).sum(-1)
        if "s" in which:
            total += 1.0 - (self.sizes[i] + self.sizes[j]) / image_size
        if "f" in which:
            bi, bj = self.boxes[i], self.boxes[j]
            joint_w = np.maximum(bi[..., 2], bj[..., 2]) - np.minimum(bi[..., 0], bj[..., 0])
            joint_h = np.maximum(bi[..., 3], bj[..., 3]) - np.minimum(bi[..., 1], bj[..., 1])
            total += 1.0 - (joint_w * joint_h - self.sizes[i] - self.sizes[j]) / image_size
        return total

    def merge(self, i: int, j: int) -> int:
        t = self.count
        si, sj = self.sizes[i], self.sizes[j]
        self.sizes[t] = si + sj
        self.boxes[t, :2] = np.minimum(self.boxes[i, :2], self.boxes[j, :2])
        self.boxes[t, 2:] = np.maximum(self.boxes[i, 2:], self.boxes[j, 2:])
        self.colour[t] = (si * self.colour[i] + sj * self.colour[j]) / (si + sj)
        self.texture[t] = (si * self.texture[i] + sj * self.texture[j]) / (si + sj)
        self.count += 1
        return t


def hierarchical_grouping(image: np.ndarray, strategy: Strategy, min_size: int = 20,
                          sigma: float = 0.8) -> np.ndarray:
    """Boxes of every region of one strategy's hierarchy, in creation order.

    Args:
        image: ``uint8[H, W, 3]`` RGB.

    Returns:
        ``float32[R, 4]`` xyxy absolute pixels; the initial regions first, then each
        merged region in the order it was formed (the last one is the top of the hierarchy).
    """
    if any(letter not in SIMILARITIES for letter in strategy.similarities) or not strategy.similarities:
        raise ConfigError(f"similarities must be letters of {SIMILARITIES!r}, got {strategy.similarities!r}")
    converted = _convert(image, strategy.colour_space)
    labels = felzenszwalb(converted, scale=strategy.scale, sigma=sigma, min_size=min_size, channel_axis=-1)
    num_regions = int(labels.max()) + 1
    colour = _histograms(labels, np.minimum((converted * COLOUR_BINS).astype(np.int64), COLOUR_BINS - 1),
                         COLOUR_BINS, num_regions)
    texture = _histograms(labels, _texture_quantised(converted), TEXTURE_BINS, num_regions)
    regions = _Regions(labels, colour, texture, num_regions)
    image_size = float(labels.size)
    which = strategy.similarities

    pairs = _neighbour_pairs(labels)
    neighbours: dict[int, set[int]] = {r: set() for r in range(num_regions)}
    for i, j in pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    similarity = regions.similarity(pairs[:, 0], pairs[:, 1], which, image_size) if len(pairs) else []
    heap = [(-s, int(i), int(j)) for s, (i, j) in zip(similarity, pairs)]
    heapq.heapify(heap)
    alive = np.zeros(2 * num_regions, bool)
    alive[:num_regions] = True
    while heap:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue  # a stale pair: one side was merged already
        t = regions.merge(i, j)
        alive[i] = alive[j] = False
        alive[t] = True
        around = (neighbours.pop(i) | neighbours.pop(j)) - {i, j}
        for k in around:
            neighbours[k] -= {i, j}
            neighbours[k].add(t)
        neighbours[t] = around
        if around:
            others = np.fromiter(around, np.int64)
            for s, k in zip(regions.similarity(t, others, which, image_size), others.tolist()):
                heapq.heappush(heap, (-s, k, t))
    return regions.boxes[: regions.count].astype(np.float32)


@dataclass
class SelectiveSearch:
    """Callable ``uint8[H, W, 3] RGB -> float32[N, 4]`` xyxy proposals, best ranked first.

    The strategies are every combination of ``colour_spaces``, ``scales`` (Felzenszwalb's
    k) and ``similarities`` (letters of ``ctsf``); the defaults are the paper's fast mode.

    Args:
        min_size: Felzenszwalb's minimum component size (pixels).
        sigma: Felzenszwalb's pre-smoothing.
        min_box_size: proposals narrower or shorter than this (pixels) are dropped.
        max_proposals: at most this many are returned.
        seed: of the random factor of the ranking (fixed, so results are reproducible).
    """

    colour_spaces: Sequence[str] = ("hsv", "lab")
    scales: Sequence[float] = (50, 100)
    similarities: Sequence[str] = ("ctsf", "tsf")
    min_size: int = 20
    sigma: float = 0.8
    min_box_size: float = 2.0
    max_proposals: int = 2000
    seed: int = 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"selective search takes uint8[H, W, 3] RGB, got {image.dtype}{list(image.shape)}")
        rng = np.random.default_rng(self.seed)
        boxes, ranks = [], []
        for strategy in strategies(self.colour_spaces, self.scales, self.similarities):
            hierarchy = hierarchical_grouping(image, strategy, self.min_size, self.sigma)
            position = np.arange(len(hierarchy), 0, -1, dtype=np.float64)  # 1 = top of the hierarchy
            boxes.append(hierarchy)
            ranks.append(position * rng.random(len(hierarchy)))
        boxes, ranks = np.concatenate(boxes), np.concatenate(ranks)
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        boxes, ranks = boxes[sides >= self.min_box_size], ranks[sides >= self.min_box_size]
        boxes = boxes[np.argsort(ranks, kind="stable")]
        _, first = np.unique(boxes, axis=0, return_index=True)
        return boxes[np.sort(first)][: self.max_proposals]


__all__ = ["SelectiveSearch", "Strategy", "hierarchical_grouping", "strategies"]
