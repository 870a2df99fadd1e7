"""detseg: config-driven object detection and semantic segmentation on PyTorch."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``from detseg import Predictor`` without importing torch models at package import
    if name == "Predictor":
        from detseg.inference import Predictor

        return Predictor
    raise AttributeError(f"module 'detseg' has no attribute {name!r}")
