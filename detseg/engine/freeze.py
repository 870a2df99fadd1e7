"""``train.freeze_backbone``: train everything but the backbone for the first iterations."""

from __future__ import annotations

import torch

from detseg.errors import ConfigError


class BackboneFreeze:
    """Freezes and releases ``model.backbone`` by iteration.

    ``iterations``: 0 never freezes, -1 freezes for the whole run, ``n`` for the first ``n``
    iterations. A frozen backbone keeps its weights and BatchNorm statistics as loaded and
    gets no gradient, so its backward is skipped and the optimizer leaves it alone.
    """

    def __init__(self, model: torch.nn.Module, iterations: int) -> None:
        self.model = model
        self.iterations = iterations
        self.parameters: list[torch.nn.Parameter] = []
        if not iterations:
            return
        if iterations < -1:
            raise ConfigError(f"train.freeze_backbone must be -1 (the whole run) or >= 0, got {iterations}")
        backbone = getattr(model, "backbone", None)
        if not isinstance(backbone, torch.nn.Module):
            raise ConfigError(f"train.freeze_backbone: model {type(model).__name__} has no backbone")
        self.parameters = [p for p in backbone.parameters() if p.requires_grad]

    def before_step(self, iteration: int) -> None:
        """Before the step of ``iteration`` (0-based): freeze or release the backbone."""
        if not self.parameters:
            return
        frozen = self.iterations == -1 or iteration < self.iterations
        self.model.backbone.train(not frozen)  # frozen BatchNorm keeps its statistics
        for p in self.parameters:
            p.requires_grad_(not frozen)
