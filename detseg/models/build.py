"""Build a model from the ``model`` node of a config."""

from __future__ import annotations

from typing import Any

from torch import nn

from detseg.config import build
from detseg.registry import MODELS


def build_model(node: Any) -> nn.Module:
    """The model named by ``node.name`` with the node's keyword arguments."""
    return build(node, MODELS, "model")
