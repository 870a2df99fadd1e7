"""Heads: proposal sources (RPN, precomputed, selective search), RoI heads and the dense
heads of one-stage detectors (YOLO v1, anchor-based YOLO, SSD)."""

from detseg.models.heads.external_proposals import PrecomputedProposals, SelectiveSearchProposals
from detseg.models.heads.roi_heads import RoIPooler, StandardRoIHead
from detseg.models.heads.rpn import RPN, ProposalSource
from detseg.models.heads.ssd import SSDHead
from detseg.models.heads.yolo import YoloHead
from detseg.models.heads.yolo_v1 import YoloV1Head
from detseg.registry import PROPOSAL_SOURCES, ROI_HEADS

PROPOSAL_SOURCES.base = ProposalSource
ROI_HEADS.base = StandardRoIHead

__all__ = [
    "RPN",
    "PrecomputedProposals",
    "ProposalSource",
    "RoIPooler",
    "SSDHead",
    "SelectiveSearchProposals",
    "StandardRoIHead",
    "YoloHead",
    "YoloV1Head",
]
