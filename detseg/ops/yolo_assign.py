"""Which YOLO predictions learn which object: YOLOv3's one best anchor, or YOLOv5's ratio rule.

Both take the objects' boxes and the head's anchors, strides and map sizes, and return the
positives as ``(object, map, anchor, row, column)`` tuples: ``object`` indexes the boxes,
``map`` the feature maps (finest first), ``anchor`` the map's anchors, ``(row, column)`` its
cell. A cell ``(i, j)`` on a map of stride ``t`` covers ``[j t, (j + 1) t) x [i t, (i + 1) t)``
of the input; the *centre cell* of a box is the one holding its centre.

``max_iou`` (YOLOv3, :func:`max_iou_assign`): one positive per object, the anchor of highest
shape IoU (both boxes put on one centre) over all maps, at the centre cell.

``ratio`` (YOLOv5, :func:`ratio_assign`): several positives per object, at three cells each.

- Anchors: on every map, every anchor whose width and height ratios to the box are both
  within the threshold: ``max(w / p_w, p_w / w, h / p_h, p_h / h) < anchor_ratio_threshold``
  (4.0 in YOLOv5). An object no anchor fits this way gets no positive.
- Cells: for each such anchor the centre cell and its two nearest neighbours. With
  ``(g_x, g_y)`` the centre in cells (pixels / stride) and ``f_x, f_y`` its fractional parts,
  the column neighbour is the cell on the left when ``f_x < 0.5``, on the right when
  ``f_x > 0.5`` (none when ``f_x = 0.5``); the row neighbour likewise, above when
  ``f_y < 0.5`` and below when ``f_y > 0.5``. A neighbour outside the map is dropped.
  A neighbour's prediction has to reach the centre from the next cell, which YOLOv5's
  centre decode ``2 sigmoid(t) - 0.5`` (range ``(-0.5, 1.5)``) allows and YOLOv3's
  ``sigmoid(t)`` does not.

Order: every centre-cell positive before every neighbour positive, each group sorted by
``(object, map, anchor)`` (a column neighbour before a row neighbour). A head that keeps only the first claim on a prediction thus
gives a contested cell to the object whose centre lies in it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from detseg.ops.kmeans_anchors import shape_iou

Positive = tuple[int, int, int, int, int]
"""``(object, map, anchor, row, column)``."""


def max_iou_assign(boxes: Tensor, anchors: Sequence[Tensor], strides: Sequence[int],
                   feature_sizes: Sequence[tuple[int, int]]) -> list[Positive]:
    """YOLOv3: each box (``[G, 4]`` xyxy input pixels) to the anchor of best shape IoU over
    all maps (``anchors[k]``: ``[A_k, 2]`` widths and heights in pixels), at its centre cell
    on that map (``strides[k]``, ``feature_sizes[k] = (rows, columns)``). One positive per
    box, in box order."""
    all_anchors = torch.cat(list(anchors))
    level_of = torch.cat([torch.full((len(a),), k) for k, a in enumerate(anchors)])
    first = torch.tensor([0] + [len(a) for a in anchors]).cumsum(0)
    wh = (boxes[:, 2:] - boxes[:, :2]).cpu().float().clamp(min=1e-6)
    best = shape_iou(wh, all_anchors).argmax(1)
    out = []
    for g, (box, b) in enumerate(zip(boxes.cpu().tolist(), best.tolist())):
        level = int(level_of[b])
        h, w = feature_sizes[level]
        stride = strides[level]
        col = min(int((box[0] + box[2]) / 2 / stride), w - 1)
        row = min(int((box[1] + box[3]) / 2 / stride), h - 1)
        out.append((g, level, b - int(first[level]), row, col))
    return out


def ratio_assign(boxes: Tensor, anchors: Sequence[Tensor], strides: Sequence[int],
                 feature_sizes: Sequence[tuple[int, int]], anchor_ratio_threshold: float = 4.0) -> list[Positive]:
    """YOLOv5: on every map each anchor whose width and height ratios to the box are within
    ``anchor_ratio_threshold``, at the centre cell and its two nearest neighbours (the rule
    and the order in the module docstring). Arguments as :func:`max_iou_assign`."""
    wh = (boxes[:, 2:] - boxes[:, :2]).cpu().float().clamp(min=1e-6)
    centre = (boxes[:, :2] + boxes[:, 2:]).cpu().float() / 2
    centres: list[Positive] = []
    neighbours: list[Positive] = []
    for level, (level_anchors, stride, (h, w)) in enumerate(zip(anchors, strides, feature_sizes)):
        ratio = wh[:, None] / level_anchors.cpu().float()[None]  # [G, A, 2]
        fits = torch.maximum(ratio, 1 / ratio).amax(-1) < anchor_ratio_threshold
        for g, a in fits.nonzero().tolist():
            gx, gy = (centre[g] / stride).tolist()
            col, row = min(max(int(gx), 0), w - 1), min(max(int(gy), 0), h - 1)
            fx, fy = gx - int(gx), gy - int(gy)
            centres.append((g, level, a, row, col))
            if fx != 0.5:
                side = col - 1 if fx < 0.5 else col + 1
                if 0 <= side < w:
                    neighbours.append((g, level, a, row, side))
            if fy != 0.5:
                side = row - 1 if fy < 0.5 else row + 1
                if 0 <= side < h:
                    neighbours.append((g, level, a, side, col))
    return sorted(centres, key=lambda p: p[:3]) + sorted(neighbours, key=lambda p: p[:3])


__all__ = ["Positive", "max_iou_assign", "ratio_assign"]
