"""What the CPU offers for bf16 arithmetic, read once from ``/proc/cpuinfo``."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

BF16_UNIT_FLAGS = ("amx_bf16", "avx512_bf16")
"""``/proc/cpuinfo`` flags of bf16 matrix / dot-product units: AMX tiles (Intel Sapphire Rapids
and later) and AVX-512 bf16 dot products (Intel Cooper Lake, AMD Zen 4 and later)."""


@functools.cache
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The first CPU's flags (empty where the file does not exist, e.g. not on Linux)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def bf16_units(flags: frozenset[str] | None = None) -> list[str]:
    """The bf16 unit flags of this CPU (or of ``flags``) with which PyTorch's oneDNN kernels
    run bf16 matrix products natively; none without oneDNN (``torch.backends.mkldnn``)."""
    flags = cpu_flags() if flags is None else flags
    if not torch.backends.mkldnn.is_available():
        return []
    return [flag for flag in BF16_UNIT_FLAGS if flag in flags]
