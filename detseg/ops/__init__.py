"""The pieces every head shares: IoU, NMS, RoI ops, anchors, matching, sampling, losses."""

from detseg.ops.anchors import AnchorGenerator
from detseg.ops.boxes import aligned_box_iou, batched_nms, batched_nms_top, box_iou, nms
from detseg.ops.losses import (
    class_weight_vector,
    class_weighted_cross_entropy,
    cross_entropy,
    sigmoid_focal_loss,
    smooth_l1_loss,
    soft_dice_loss,
)
from detseg.ops.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher, MatchResult
from detseg.ops.roi import roi_align, roi_pool
from detseg.ops.sampler import BalancedSampler

__all__ = [
    "IGNORE",
    "NEGATIVE",
    "POSITIVE",
    "AnchorGenerator",
    "BalancedSampler",
    "MatchResult",
    "Matcher",
    "aligned_box_iou",
    "batched_nms",
    "batched_nms_top",
    "box_iou",
    "class_weight_vector",
    "class_weighted_cross_entropy",
    "cross_entropy",
    "nms",
    "roi_align",
    "roi_pool",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_dice_loss",
]
