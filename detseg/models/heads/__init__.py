"""Heads: proposal sources (RPN, precomputed, selective search) and RoI heads."""

import detseg.models.heads.yolo_v1  # noqa: F401 - registers the yolo_v1 dense head
from detseg.models.heads.external_proposals import PrecomputedProposals, SelectiveSearchProposals
from detseg.models.heads.roi_heads import RoIPooler, StandardRoIHead
from detseg.models.heads.rpn import RPN, ProposalSource
from detseg.registry import PROPOSAL_SOURCES, ROI_HEADS

PROPOSAL_SOURCES.base = ProposalSource
ROI_HEADS.base = StandardRoIHead

__all__ = ["RPN", "PrecomputedProposals", "ProposalSource", "RoIPooler", "SelectiveSearchProposals", "StandardRoIHead"]
