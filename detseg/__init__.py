"""detseg: config-driven object detection and semantic segmentation on PyTorch."""

__version__ = "0.1.0"
