"""The backbone contract: named feature maps with known channels and strides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.errors import ConfigError


@dataclass(frozen=True)
class FeatureSpec:
    """A feature map's channel count and stride (input pixels per feature cell)."""

    channels: int
    stride: int


def select_features(input_shape: dict[str, FeatureSpec], in_features: list[str] | tuple[str, ...],
                    owner: str) -> dict[str, FeatureSpec]:
    """The specs of ``in_features``; a name that is not a feature map fails naming ``owner``."""
    from detseg.registry import did_you_mean

    for name in in_features:
        if name not in input_shape:
            raise ConfigError(f"{owner}: in_feature '{name}' is not a feature map"
                              f"{did_you_mean(name, list(input_shape))}; maps: {list(input_shape)}")
    return {name: input_shape[name] for name in in_features}


def shared_channels(specs: dict[str, FeatureSpec], owner: str) -> int:
    """The channel count all ``specs`` share (heads shared across levels need one)."""
    channels = {spec.channels for spec in specs.values()}
    if len(channels) != 1:
        raise ConfigError(f"{owner}: in_features {list(specs)} have different channels {sorted(channels)}")
    return channels.pop()


class Backbone(nn.Module):
    """``forward(images[B, 3, H, W]) -> {name: Tensor[B, C, H/stride, W/stride]}``.

    Subclasses report what they return in :meth:`output_shape`, so necks and heads size
    themselves from it and no YAML repeats channel counts.
    """

    def output_shape(self) -> dict[str, FeatureSpec]:
        raise NotImplementedError

    def forward_with_indices(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Features and, per pooled map, its max-pooling argmax indices (for max un-pooling).
        Only encoders built from max-pooling have them."""
        raise ConfigError(f"backbone {type(self).__name__} has no max-pooling indices; un-pooling needs an "
                          f"encoder with max-pooling (tiny_vgg)")

    @property
    def size_divisibility(self) -> int:
        """Inputs padded to a multiple of this keep every feature map aligned."""
        return max(spec.stride for spec in self.output_shape().values())


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (buffers, not parameters).

    Same arithmetic as ``torchvision.ops.FrozenBatchNorm2d``, but through the fused
    inference kernel of ``F.batch_norm`` instead of a separate multiply and add, which is
    about 3x faster on the CPU (measured in bench/train_speed.py).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        for name, fill in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((num_features,), fill))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by :class:`FrozenBatchNorm2d` (same statistics)."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        frozen.weight.copy_(module.weight.detach())
        frozen.bias.copy_(module.bias.detach())
        frozen.running_mean.copy_(module.running_mean)
        frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        setattr(module, name, freeze_batch_norm(child))
    return module


def load_pretrained(model: nn.Module, path: str, name: str) -> None:
    """Load a local state-dict file into ``model`` (strict), never downloading.

    Raises:
        ConfigError: the file is missing, or its keys do not fit the model.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"pretrained weights for backbone '{name}' not found: {file}. detseg never downloads; "
            f"save a state dict there first, e.g. torch.save(torchvision.models.{name}("
            f"weights='DEFAULT').state_dict(), '{file}') on a machine with internet."
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"{file} does not fit backbone '{name}': missing keys {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )


def freeze(modules: list[nn.Module]) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(False)


def features_of(stages: nn.ModuleDict, x: Tensor, out_features: list[str]) -> dict[str, Tensor]:
    """Run ``stages`` in order, keeping the outputs named in ``out_features``."""
    out = {}
    for name, stage in stages.items():
        x = stage(x)
        if name in out_features:
            out[name] = x
        if len(out) == len(out_features):
            break
    return out
