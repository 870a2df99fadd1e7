"""Fetch published weights through torchvision's own weights API and the torch hub cache.

Files land where torchvision puts them (``$TORCH_HOME/hub/checkpoints/<file>``, by default
``~/.cache/torch/hub/checkpoints``), so a file fetched once by detseg, torchvision or a
browser is reused. Without internet the error names the URL and the exact path to put the
file at.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor

from detseg.errors import ConfigError


def hub_cache_file(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps the file of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_state_dict(url: str, what: str, progress: bool = True) -> dict[str, Tensor]:
    """The state dict at ``url``, from the hub cache or downloaded into it.

    Args:
        url: the weights' URL (``torchvision.models.<X>_Weights.<Y>.url``).
        what: the weights in words, for the error (``"resnet50 IMAGENET1K_V2"``).

    Raises:
        ConfigError: the download failed (no internet, a proxy, a full disk) or the cached
            file cannot be read; the message names the URL, the cache path and the file name.
    """
    cached = hub_cache_file(url)
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=progress,
                                                   weights_only=True)
    except Exception as exc:  # URLError, HTTPError, OSError, a truncated or corrupt file
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        state_of_cache = "is there but cannot be read" if cached.is_file() else "is not there"
        raise ConfigError(
            f"cannot get the {what} weights: {reason}. Download {url} on a machine with internet "
            f"and put the file at {cached} (file name {cached.name}; the cache directory is "
            f"$TORCH_HOME/hub/checkpoints, now {cached.parent}); that file {state_of_cache}."
        ) from None
    return state
