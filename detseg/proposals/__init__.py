"""Region proposals without a network: selective search
(:mod:`detseg.proposals.selective_search`, imported on use because it loads
scikit-image), proposal files and proposal recall."""

from detseg.proposals.files import ProposalAttacher, ProposalSet, read_proposals, write_proposals
from detseg.proposals.recall import proposal_recall

__all__ = ["ProposalAttacher", "ProposalSet", "proposal_recall", "read_proposals", "write_proposals"]
