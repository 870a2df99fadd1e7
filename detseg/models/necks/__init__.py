"""Necks between backbone and heads."""

from detseg.models.necks.fpn import FPN, Neck
from detseg.models.necks.pan import PAN
from detseg.registry import NECKS

NECKS.base = Neck

__all__ = ["FPN", "PAN", "Neck"]
