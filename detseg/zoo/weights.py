"""Fetch published weights through torchvision's own weights API and the torch hub cache.

Files land where torchvision puts them (``$TORCH_HOME/hub/checkpoints/<file>``, by default
``~/.cache/torch/hub/checkpoints``), so a file fetched once by detseg, torchvision or a
browser is reused. Without internet the error names the URL and the exact path to put the
file at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch
from torch import Tensor

from detseg.errors import ConfigError

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum


def hub_cache_file(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps the file of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_state_dict(url: str, what: str, progress: bool = True, instead: str = "") -> dict[str, Tensor]:
    """The state dict at ``url``, from the hub cache or downloaded into it.

    Args:
        url: the weights' URL (``torchvision.models.<X>_Weights.<Y>.url``).
        what: the weights in words, for the error (``"resnet50 IMAGENET1K_V2"``).
        instead: another way to give the file, appended to the error (``"or set ... to its path"``).

    Raises:
        ConfigError: the download failed (no internet, a proxy, a full disk) or the cached
            file cannot be read; the message names the URL, the cache path and the file name.
    """
    cached = hub_cache_file(url)
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=progress,
                                                   weights_only=True)
    except Exception as exc:  # URLError, HTTPError, OSError, a truncated or corrupt file
        text = str(getattr(exc, "reason", None) or exc).strip()  # URLError: just its reason, without the wrapper text
        reason = text.splitlines()[-1] if text else type(exc).__name__
        state_of_cache = "is there but cannot be read" if cached.is_file() else "is not there"
        raise ConfigError(
            f"cannot get the {what} weights: {reason}. Download {url} on a machine with internet "
            f"and put the file at {cached} (file name {cached.name}; the cache directory is "
            f"$TORCH_HOME/hub/checkpoints, now {cached.parent}); that file {state_of_cache}"
            f"{'; ' + instead if instead else ''}."
        ) from None
    return state


IMAGENET_ALIASES = ("imagenet", "DEFAULT")
"""Names that pick torchvision's ``DEFAULT`` weights of an architecture (its best ImageNet set)."""


def torchvision_weights(arch: str, name: str) -> WeightsEnum:
    """The ``torchvision.models`` weights enum member ``name`` of ``arch``.

    ``name`` is ``imagenet`` or ``DEFAULT`` (torchvision's best ImageNet weights of that
    architecture), a member such as ``IMAGENET1K_V2``, or its full form
    ``ResNet50_Weights.IMAGENET1K_V2``; case does not matter.

    Raises:
        ConfigError: ``arch`` has no weights in torchvision, or ``name`` is none of its
            weights; the message lists the valid names.
    """
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise ConfigError(f"torchvision has no published weights for '{arch}'") from None
    valid = [*IMAGENET_ALIASES, *(w.name for w in enum)]
    key = name.strip()
    if key.lower().startswith(enum.__name__.lower() + "."):
        key = key[len(enum.__name__) + 1:]
    if key.lower() in (alias.lower() for alias in IMAGENET_ALIASES):
        return enum.DEFAULT
    for weights in enum:
        if weights.name.lower() == key.lower():
            return weights
    from detseg.registry import did_you_mean

    raise ConfigError(f"unknown weights '{name}' for {arch}{did_you_mean(key, valid)}; torchvision has "
                      f"{', '.join(valid)} ({enum.__name__}; DEFAULT is {enum.DEFAULT.name}), or give a "
                      f"state-dict file path")

