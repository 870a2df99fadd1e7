"""The commands' allocator setting (detseg/allocator.py), checked in fresh processes: glibc
serves a 64 MiB block with mmap by default and from the heap once the threshold is raised."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from detseg.allocator import keep_large_allocations_on_heap

MMAPPED_BLOCKS_AFTER_64_MIB = """
import ctypes, sys
from detseg.allocator import keep_large_allocations_on_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

applied = keep_large_allocations_on_heap() if sys.argv[1] == "raise" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)
print(applied, libc.mallinfo2().hblks - before)
libc.free(ctypes.c_void_p(block))
"""

on_glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                              reason="glibc's malloc only (the setting does nothing elsewhere)")


def _run(mode: str, env: dict[str, str]) -> list[str]:
    result = subprocess.run([sys.executable, "-c", MMAPPED_BLOCKS_AFTER_64_MIB, mode], env=env,
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}


@on_glibc
def test_raised_threshold_keeps_a_64_mib_block_off_mmap():
    assert _run("default", _clean_env()) == ["None", "1"]  # glibc's default: one mmapped block
    assert _run("raise", _clean_env()) == ["True", "0"]  # from the heap


@on_glibc
def test_the_environment_setting_wins():
    env = {**_clean_env(), "MALLOC_MMAP_THRESHOLD_": "131072"}
    assert _run("raise", env) == ["False", "1"]  # left as the user set it: still mmapped


def test_nothing_is_done_when_the_environment_sets_it(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "4294967296")
    assert keep_large_allocations_on_heap() is False
