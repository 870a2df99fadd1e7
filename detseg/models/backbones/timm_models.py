"""Any ``timm`` model as a backbone, through timm's ``features_only`` interface.

``backbone: {name: timm, model: resnet18d, out_features: [c3, c4, c5]}``: the feature maps
are named ``c<k>`` after their stride ``2**k`` (timm's ``feature_info.reduction()``), so a
timm backbone drops into configs written for the other backbones; channels come from
``feature_info.channels()``. ``pretrained: true`` loads timm's own pretrained weights of the
model (a tag picks other ones: ``model: resnet18.a1_in1k``), through timm's mechanism and its
caches (the Hugging Face hub cache ``$HF_HOME/hub``, or the torch hub cache
``$TORCH_HOME/hub/checkpoints`` for weights published at a URL); ``pretrained: PATH`` loads a
local state dict of the classification model (``.pth`` or ``.safetensors``; the classifier's
keys are ignored). timm is an optional dependency: ``pip install timm``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from detseg.errors import ConfigError
from detseg.models.backbones.base import Backbone, FeatureSpec, freeze_batch_norm
from detseg.registry import BACKBONES, did_you_mean

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""The files timm looks for in a Hugging Face hub repository, in its order (unless the
model's ``pretrained_cfg`` names another one in ``hf_hub_filename``)."""


@BACKBONES.register("timm")
class TimmBackbone(Backbone):
    """Args:
        model: a timm model name (``timm.list_models()``), optionally with a pretrained tag
            (``resnet18.a1_in1k``; ``timm.list_pretrained('resnet18*')``).
        out_features: which ``c<k>`` maps to return (default: all the model has).
        pretrained: ``true``: timm's pretrained weights of ``model``, read from the Hugging
            Face hub cache (``$HF_HUB_CACHE``, by default ``$HF_HOME/hub``) or the torch hub
            cache (``$TORCH_HOME/hub/checkpoints``) when they are there, else downloaded by timm
            into the Hugging Face cache; without internet the error names the URL and where to
            put the file. Or a local state-dict file of ``timm.create_model(model)`` (``.pth``,
            ``.safetensors``).
        frozen_bn: BatchNorm with fixed statistics and affine parameters.
        model_kwargs: more ``timm.create_model`` arguments (e.g. ``drop_path_rate``).
    """

    def __init__(self, model: str, out_features: Sequence[str] | None = None,
                 pretrained: bool | str | None = None, frozen_bn: bool = False, **model_kwargs) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:
            raise ConfigError("backbone 'timm' needs the timm package: pip install timm "
                              "(or pip install 'detseg[timm]')") from None
        arch = model.split(".", 1)[0]
        if arch not in timm.list_models():
            raise ConfigError(f"backbone 'timm': unknown model '{arch}'{did_you_mean(arch, timm.list_models())}")
        pretrained_cfg = _pretrained_cfg(timm, model)
        if pretrained is True:
            self.body = _create_pretrained(timm, model, pretrained_cfg, model_kwargs)
        else:
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
        from timm.models import load_state_dict

        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"pretrained weights for timm model '{model}' not found: {file}. Give an existing "
                              f"state-dict file (e.g. torch.save(timm.create_model('{model}', pretrained=True)"
                              f".state_dict(), '{file}')), or pretrained: true for timm's own weights.")
        try:
            state = load_state_dict(str(file), use_ema=False, weights_only=True)  # .pth, .bin or .safetensors
        except Exception as exc:
            raise ConfigError(f"cannot read the pretrained weights {file} of timm model '{model}': "
                              f"{_first_line(exc)}") from None
        try:
            missing, unexpected = self.body.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a tensor of another shape
            raise ConfigError(f"{file} does not fit timm model '{model}': "
                              f"{str(exc).splitlines()[-1].strip()}") from None
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _pretrained_cfg(timm: Any, model: str) -> Any:
    """timm's ``pretrained_cfg`` of ``model`` (its default tag unless ``model`` names one)."""
    try:
        return timm.models.get_pretrained_cfg(model)
    except RuntimeError:  # an unknown tag
        arch = model.split(".", 1)[0]
        tags = timm.list_pretrained(f"{arch}.*")
        has = tags or f"no pretrained weights for {arch}"
        raise ConfigError(f"backbone 'timm': unknown pretrained tag in '{model}'{did_you_mean(model, tags)}; "
                          f"timm has {has}") from None


def _create_pretrained(timm: Any, model: str, cfg: Any, model_kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model(model, pretrained=True, features_only=True)``, reading the weights
    from a cache first, and failing with one clear line when they cannot be had."""
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        arch = model.split(".", 1)[0]
        raise ConfigError(f"backbone 'timm': timm has no pretrained weights for '{model}'; models with weights: "
                          f"timm.list_pretrained('{arch}*') = {timm.list_pretrained(f'{arch}*')[:10]}")
    hub = _hf_source(cfg)
    overlay = dict(model_kwargs.pop("pretrained_cfg_overlay", None) or {})
    cached = _cached_file(cfg, hub)
    if cached is not None:
        overlay["file"] = cached  # timm loads it as its own pretrained file (filters, in_chans adaption)
    elif hub is not None and not cfg.file:
        reason = _unreachable(*hub)
        if reason is not None:  # fail at once instead of the hub client's ~45 s of retries per file
            raise ConfigError(_cannot_get(model, cfg, hub, reason))
    try:
        return timm.create_model(model, pretrained=True, features_only=True, pretrained_cfg_overlay=overlay or None,
                                 **model_kwargs)
    except ConfigError:
        raise
    except Exception as exc:  # the download failed, or the downloaded file cannot be read
        raise ConfigError(_cannot_get(model, cfg, hub, _first_line(exc))) from None


def _hf_source(cfg: Any) -> tuple[str, str | None, str] | None:
    """``(repo_id, revision, file name)`` when timm takes ``cfg``'s weights from the Hugging
    Face hub (it does when ``hf_hub_id`` is set and huggingface_hub is installed)."""
    if not cfg.hf_hub_id:
        return None
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return None
    repo, _, revision = cfg.hf_hub_id.partition("@")
    return repo, revision or None, cfg.hf_hub_filename or HF_WEIGHT_FILES[0]


def _cached_file(cfg: Any, hub: tuple[str, str | None, str] | None) -> str | None:
    """The weights file of ``cfg`` already in the Hugging Face or the torch hub cache."""
    from detseg.zoo.weights import hub_cache_file

    if hub is not None:
        from huggingface_hub import try_to_load_from_cache

        repo, revision, filename = hub
        for name in [filename] if cfg.hf_hub_filename else HF_WEIGHT_FILES:
            found = try_to_load_from_cache(repo, name, revision=revision)
            if isinstance(found, str):  # else None, or a marker that the hub has no such file
                return found
    if cfg.url and hub_cache_file(cfg.url).is_file():
        return str(hub_cache_file(cfg.url))
    return None


def _unreachable(repo: str, revision: str | None, filename: str) -> str | None:
    """Why the Hugging Face hub cannot be reached (one request, no retries), or None when it answers."""
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    try:
        huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(repo, filename, revision=revision))
    except HfHubHTTPError:  # the hub answered (a file it does not have, a gated repository): timm decides
        return None
    except Exception as exc:  # no connection, a proxy, DNS, a timeout, HF_HUB_OFFLINE=1
        return _first_line(exc)
    return None


def _cannot_get(model: str, cfg: Any, hub: tuple[str, str | None, str] | None, reason: str) -> str:
    """One line: why the weights are missing, what to download and where to put it."""
    from detseg.zoo.weights import hub_cache_file

    ways = []
    if cfg.url:
        ways.append(f"download {cfg.url} and put it at {hub_cache_file(cfg.url)} (the torch hub cache, "
                    f"$TORCH_HOME/hub/checkpoints)")
    if hub is not None:
        import huggingface_hub
        from huggingface_hub import constants

        repo, revision, filename = hub
        folder = "models--" + repo.replace("/", "--")
        ways.append(f"download {huggingface_hub.hf_hub_url(repo, filename, revision=revision)} and set "
                    f"backbone.pretrained to its path")
        ways.append(f"copy the folder {folder} of a Hugging Face cache that has it (`hf download {repo}`) into "
                    f"{constants.HF_HUB_CACHE} (HF_HUB_CACHE, by default $HF_HOME/hub)")
    source = f"Hugging Face hub {hub[0]}" if hub is not None else cfg.url or cfg.file
    return (f"cannot get timm's pretrained weights for '{model}' from {source}: {reason}. On a machine with internet, "
            + "; or ".join(ways) + ".")
