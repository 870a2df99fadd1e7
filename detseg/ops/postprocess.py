"""Detections from scored boxes: the one post-processing step every detection head ends with."""

from __future__ import annotations

from torch import Tensor

from detseg.ops.boxes import batched_nms
from detseg.structures import Boxes, Instances


def select_detections(boxes: Tensor, scores: Tensor, image_size: tuple[int, int], score_threshold: float,
                      nms_threshold: float, top_k: int, candidates_per_class: int | None = None,
                      min_box_size: float = 1e-3) -> Instances:
    """Detections of one image: score filter, per-class NMS, top-k.

    Args:
        boxes: ``[N, C, 4]`` xyxy per proposal and class (RoI heads), or ``[N, 4]`` one box
            per prediction for all classes (dense heads); clipped here to ``image_size``.
        scores: ``[N, C]`` per prediction and class (background left out).
        candidates_per_class: before NMS, keep only each class's best this many (dense
            heads score thousands of boxes per class).
        min_box_size: boxes (after clipping) not wider and taller than this are dropped.

    Returns:
        boxes scoring above ``score_threshold``, non-empty, per-class NMS at
        ``nms_threshold``, the ``top_k`` best, at ``image_size``.
    """
    n = scores.shape[0]
    keep = scores > score_threshold
    if candidates_per_class is not None and n > candidates_per_class:
        kth_best = scores.topk(candidates_per_class, dim=0).values[-1]
        keep = keep & (scores >= kth_best)
    box_index, flat_labels = keep.nonzero(as_tuple=True)
    flat_scores = scores[box_index, flat_labels]
    flat_boxes = boxes[box_index] if boxes.dim() == 2 else boxes[box_index, flat_labels]
    flat_boxes = Boxes(flat_boxes).clip(image_size).tensor
    nonempty = Boxes(flat_boxes).nonempty(min_box_size)
    flat_boxes, flat_scores, flat_labels = flat_boxes[nonempty], flat_scores[nonempty], flat_labels[nonempty]
    keep = batched_nms(flat_boxes, flat_scores, flat_labels, nms_threshold)[:top_k]
    return Instances(Boxes(flat_boxes[keep]), flat_labels[keep], image_size, scores=flat_scores[keep])
