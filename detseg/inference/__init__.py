"""Inference: the Predictor API, the fast path it runs on, and drawing."""

from detseg.inference.optimize import InferencePlan, optimize_for_inference
from detseg.inference.predictor import Predictor, to_rgb_array
from detseg.inference.visualize import draw_instances, draw_label_map

__all__ = ["InferencePlan", "Predictor", "draw_instances", "draw_label_map", "optimize_for_inference",
           "to_rgb_array"]
