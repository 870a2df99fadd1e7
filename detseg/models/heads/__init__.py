"""Heads: proposal sources (RPN, precomputed, selective search), RoI heads and the dense
heads of one-stage detectors (YOLO v1, anchor-based YOLO, SSD)."""

from detseg.models.heads.base import DenseHead, ProposalSource, RoIHead
from detseg.models.heads.external_proposals import PrecomputedProposals, SelectiveSearchProposals
from detseg.models.heads.rcnn_head import RCNNRoIHead
from detseg.models.heads.region_features import CropWarp, RoIPooler
from detseg.models.heads.roi_heads import RoIHeadOutput, StandardRoIHead
from detseg.models.heads.rpn import RPN, RPNOutput
from detseg.models.heads.ssd import SSDHead, SSDOutput
from detseg.models.heads.yolo import YoloHead, YoloOutput
from detseg.models.heads.yolo_v1 import YoloV1Head, YoloV1Output

__all__ = [
    "RPN",
    "CropWarp",
    "DenseHead",
    "PrecomputedProposals",
    "ProposalSource",
    "RCNNRoIHead",
    "RPNOutput",
    "RoIHead",
    "RoIHeadOutput",
    "RoIPooler",
    "SSDHead",
    "SSDOutput",
    "SelectiveSearchProposals",
    "StandardRoIHead",
    "YoloHead",
    "YoloOutput",
    "YoloV1Head",
    "YoloV1Output",
]
