"""Evaluators: COCO mAP (pycocotools), Pascal VOC AP, segmentation metrics, confusion."""

from detseg.evaluation.base import Evaluator, gather, nest_per_class
from detseg.evaluation.coco import COCO_METRICS, CocoEvaluator, coco_metrics
from detseg.evaluation.confusion import DetectionConfusionMatrix
from detseg.evaluation.segmentation import (
    SegmentationEvaluator,
    confusion_matrix,
    segmentation_metrics,
)
from detseg.evaluation.voc import VocEvaluator, average_precision, voc_class_ap, voc_metrics

__all__ = [
    "COCO_METRICS",
    "CocoEvaluator",
    "DetectionConfusionMatrix",
    "Evaluator",
    "SegmentationEvaluator",
    "VocEvaluator",
    "average_precision",
    "coco_metrics",
    "confusion_matrix",
    "gather",
    "nest_per_class",
    "segmentation_metrics",
    "voc_class_ap",
    "voc_metrics",
]
