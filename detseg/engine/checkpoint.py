"""Checkpoints: written atomically, read with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detseg.checkpoint_format import inference_weights
from detseg.errors import DetsegError


class CheckpointError(DetsegError):
    """A checkpoint that is missing, unreadable, or made for another model."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename, so a run
    killed mid-write never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain Python values only: no code runs)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint, or one holding "
                              f"objects other than tensors and plain values ({first})") from exc
    except Exception as exc:  # truncated zip, bad magic number, I/O error
        raise CheckpointError(f"cannot read checkpoint {path}: not a readable PyTorch checkpoint "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())})") from exc


def load_model_state(model: nn.Module, state: dict[str, Any], source: str) -> None:
    """Load weights strictly; a checkpoint of another model lists the mismatched keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                   for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "") or "none"

        raise CheckpointError(
            f"{source} was made for another model or config: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}; shape mismatches: {show(wrong_shape)}"
        )
    model.load_state_dict(state)



__all__ = ["CheckpointError", "inference_weights", "load_checkpoint", "load_model_state", "save_checkpoint"]
