"""Necks between backbone and heads."""

from detseg.models.necks.fpn import FPN, Neck
from detseg.registry import NECKS

NECKS.base = Neck

__all__ = ["FPN", "Neck"]
