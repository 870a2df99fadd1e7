"""Typed containers: boxes, instances, label maps, samples, the R-CNN box coder and mask helpers."""

from detseg.structures.box_coder import BoxCoder
from detseg.structures.boxes import (
    Boxes,
    cxcywh_to_xyxy,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from detseg.structures.instances import Instances
from detseg.structures.sample import IGNORE_INDEX, DetSample
from detseg.structures.semantic import SemanticMap

__all__ = [
    "IGNORE_INDEX",
    "BoxCoder",
    "Boxes",
    "DetSample",
    "Instances",
    "SemanticMap",
    "cxcywh_to_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh",
    "xyxy_to_xywh",
]
