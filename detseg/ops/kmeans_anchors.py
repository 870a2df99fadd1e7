"""Anchor shapes from the training boxes: k-means with ``1 - IoU`` distance (YOLOv2, section 2).

Boxes are compared by shape alone, as if they shared a centre, so the distance does not
grow with box size the way a Euclidean distance on ``(w, h)`` would.
"""

from __future__ import annotations

import torch
from torch import Tensor


def shape_iou(wh: Tensor, centroids: Tensor) -> Tensor:
    """IoU of ``[N, 2]`` and ``[K, 2]`` ``(width, height)`` boxes sharing a centre -> ``[N, K]``."""
    inter = torch.minimum(wh[:, None], centroids[None]).prod(-1)
    return inter / (wh.prod(-1)[:, None] + centroids.prod(-1)[None] - inter)


def kmeans_anchors(wh: Tensor, k: int, max_iters: int = 300, seed: int = 0) -> tuple[Tensor, float]:
    """Cluster box shapes into ``k`` anchors.

    k-means++ seeding under the ``1 - IoU`` distance, then Lloyd iterations (assign each
    box to the centroid of highest IoU, move each centroid to its boxes' median shape)
    until the assignment stops changing.

    Args:
        wh: ``[N, 2]`` widths and heights (pixels), all positive.
        k: number of anchors.

    Returns:
        ``(anchors[k, 2], mean_iou)``: anchors sorted by area, and the mean over boxes of
        the IoU with their best anchor.
    """
    wh = wh.double()
    if wh.ndim != 2 or wh.shape[1] != 2 or len(wh) < k or k < 1:
        raise ValueError(f"need [N, 2] box shapes with N >= k >= 1, got {tuple(wh.shape)} and k={k}")
    if bool((wh <= 0).any()):
        raise ValueError("box widths and heights must be positive")
    generator = torch.Generator().manual_seed(seed)
    centroids = wh[torch.randint(len(wh), (1,), generator=generator)]
    while len(centroids) < k:  # k-means++: far boxes (in 1 - IoU) are likelier seeds
        distance = 1 - shape_iou(wh, centroids).max(1).values
        weights = distance**2 if float(distance.sum()) > 0 else torch.ones_like(distance)
        centroids = torch.cat([centroids, wh[torch.multinomial(weights, 1, generator=generator)]])
    assignment = None
    for _ in range(max_iters):
        new_assignment = shape_iou(wh, centroids).argmax(1)
        if assignment is not None and bool((new_assignment == assignment).all()):
            break
        assignment = new_assignment
        for j in range(k):
            members = wh[assignment == j]
            if len(members):
                centroids[j] = members.median(0).values
    centroids = centroids[centroids.prod(1).argsort()]
    mean_iou = float(shape_iou(wh, centroids).max(1).values.mean())
    return centroids.float(), mean_iou
