"""Models: backbones, necks, heads, detectors and segmenters. Importing registers them all."""

from detseg.models import backbones, detectors, heads, necks, segmenters  # noqa: F401
from detseg.models.build import build_model

__all__ = ["build_model"]
