"""Build a model from the ``model`` node of a config."""

from __future__ import annotations

from typing import Any

from torch import nn

from detseg.config import build
from detseg.registry import MODELS


def build_model(node: Any) -> nn.Module:
    """The model named by ``node.name`` with the node's keyword arguments."""
    return build(node, MODELS, "model")


def build_trunk(backbone: Any, neck: Any | None) -> tuple[Any, Any | None, dict]:
    """Backbone and optional neck from their config nodes, and the feature shapes
    (``{name: FeatureSpec}``) that the heads on top of them are built for."""
    from detseg.registry import BACKBONES, NECKS

    backbone_module = build(backbone, BACKBONES, "model.backbone")
    shape = backbone_module.output_shape()
    neck_module = None
    if neck is not None:
        neck_module = build(neck, NECKS, "model.neck", input_shape=shape)
        shape = neck_module.output_shape()
    return backbone_module, neck_module, shape
