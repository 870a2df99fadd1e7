from detseg.models.detectors.two_stage import TwoStageDetector, build_faster_rcnn

__all__ = ["TwoStageDetector", "build_faster_rcnn"]
