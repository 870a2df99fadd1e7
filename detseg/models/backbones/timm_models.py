"""Any ``timm`` model as a backbone, through timm's ``features_only`` interface.

``backbone: {name: timm, model: resnet18d, out_features: [c3, c4, c5]}``: the feature maps
are named ``c<k>`` after their stride ``2**k`` (timm's ``feature_info.reduction()``), so a
timm backbone drops into configs written for the other backbones; channels come from
``feature_info.channels()``. Weights come only from a local file (``pretrained: PATH``,
the classification model's state dict; the classifier's keys are ignored). timm is an
optional dependency: ``pip install timm``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from detseg.errors import ConfigError
from detseg.models.backbones.base import Backbone, FeatureSpec, freeze_batch_norm
from detseg.registry import BACKBONES, did_you_mean


@BACKBONES.register("timm")
class TimmBackbone(Backbone):
    """Args:
        model: a timm model name (``timm.list_models()``).
        out_features: which ``c<k>`` maps to return (default: all the model has).
        pretrained: a local state-dict file of ``timm.create_model(model)``; never downloads.
        frozen_bn: BatchNorm with fixed statistics and affine parameters.
        model_kwargs: more ``timm.create_model`` arguments (e.g. ``drop_path_rate``).
    """

    def __init__(self, model: str, out_features: Sequence[str] | None = None, pretrained: str | None = None,
                 frozen_bn: bool = False, **model_kwargs) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:
            raise ConfigError("backbone 'timm' needs the timm package: pip install timm "
                              "(or pip install 'detseg[timm]')") from None
        if model not in timm.list_models():
            raise ConfigError(f"backbone 'timm': unknown model '{model}'{did_you_mean(model, timm.list_models())}")
        self.body = timm.create_model(model, pretrained=False, features_only=True, **model_kwargs)
        if pretrained:
            self._load(pretrained, model)
        if frozen_bn:
            self.body = freeze_batch_norm(self.body)
        info = self.body.feature_info
        names = [f"c{int(math.log2(r))}" for r in info.reduction()]
        self._all = {n: FeatureSpec(c, r) for n, c, r in zip(names, info.channels(), info.reduction())}
        self.out_features = list(out_features) if out_features else names
        for name in self.out_features:
            if name not in self._all:
                raise ConfigError(f"backbone 'timm' ({model}): unknown out_feature '{name}'"
                                  f"{did_you_mean(name, names)}; it has {names}")
        self._names = names

    def _load(self, path: str, model: str) -> None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"pretrained weights for timm model '{model}' not found: {file}. detseg never "
                              f"downloads; save them there first, e.g. torch.save(timm.create_model('{model}', "
                              f"pretrained=True).state_dict(), '{file}') on a machine with internet.")
        state = torch.load(file, map_location="cpu", weights_only=True)
        try:
            missing, unexpected = self.body.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a tensor of another shape
            raise ConfigError(f"{file} does not fit timm model '{model}': {str(exc).splitlines()[-1].strip()}") from None
        # Keys of modules that features_only drops (the classifier head) are expected extras;
        # extras inside kept modules mean another architecture (resnet34d weights for resnet18d).
        kept = {name for name, _ in self.body.named_children()}
        unexpected = [k for k in unexpected if k.split(".")[0] in kept]
        if missing or unexpected:
            raise ConfigError(f"{file} does not fit timm model '{model}': missing keys {missing[:5]}, "
                              f"unexpected keys {unexpected[:5]}")

    def output_shape(self) -> dict[str, FeatureSpec]:
        return {name: self._all[name] for name in self.out_features}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = dict(zip(self._names, self.body(x)))
        return {name: features[name] for name in self.out_features}
