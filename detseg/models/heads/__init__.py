"""Heads: proposal sources (RPN, precomputed, selective search), RoI heads and the dense
heads of one-stage detectors (YOLO v1, anchor-based YOLO, SSD)."""

from detseg.models.heads.base import DenseHead, ProposalSource
from detseg.models.heads.external_proposals import PrecomputedProposals, SelectiveSearchProposals
from detseg.models.heads.roi_heads import RoIHeadOutput, RoIPooler, StandardRoIHead
from detseg.models.heads.rpn import RPN, RPNOutput
from detseg.models.heads.ssd import SSDHead, SSDOutput
from detseg.models.heads.yolo import YoloHead, YoloOutput
from detseg.models.heads.yolo_v1 import YoloV1Head, YoloV1Output

__all__ = [
    "RPN",
    "DenseHead",
    "RPNOutput",
    "RoIHeadOutput",
    "SSDOutput",
    "YoloOutput",
    "YoloV1Output",
    "PrecomputedProposals",
    "ProposalSource",
    "RoIPooler",
    "SSDHead",
    "SelectiveSearchProposals",
    "StandardRoIHead",
    "YoloHead",
    "YoloV1Head",
]
