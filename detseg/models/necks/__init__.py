"""Necks between backbone and heads."""

from detseg.models.necks.fpn import FPN, Neck
from detseg.models.necks.pan import PAN

__all__ = ["FPN", "PAN", "Neck"]
