"""Inference: the Predictor API and drawing."""

from detseg.inference.predictor import Predictor, to_rgb_array
from detseg.inference.visualize import draw_instances, draw_label_map

__all__ = ["Predictor", "draw_instances", "draw_label_map", "to_rgb_array"]
