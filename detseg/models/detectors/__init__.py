from detseg.models.detectors.one_stage import OneStageDetector
from detseg.models.detectors.two_stage import TwoStageDetector, build_faster_rcnn

__all__ = ["OneStageDetector", "TwoStageDetector", "build_faster_rcnn"]
