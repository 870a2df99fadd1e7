"""Progress on long work: a live bar on a terminal, plain lines in a file.

Redirected to a file (CI logs, ``nohup``, cluster jobs), a tqdm bar writes a carriage-return
frame per refresh; :func:`progress` then prints one plain line every ``DETSEG_PROGRESS_SECONDS``
seconds (default 30) and at the end instead::

    train: 750/1500 (50%) loss=0.151 lr=2.00e-02 7.1 it/s ETA 1m45s
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", initial: int = 0, disable: bool = False, leave: bool = True,
             stream: TextIO | None = None) -> Any:
    """A tqdm bar when ``stream`` (default stderr) is a terminal, else a :class:`PlainProgress`;
    both offer iteration, ``update``, ``set_postfix`` and ``close``."""
    stream = stream or sys.stderr
    if stream.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, leave=leave,
                    dynamic_ncols=True, file=stream)
    seconds = float(os.environ.get("DETSEG_PROGRESS_SECONDS", 30))
    return PlainProgress(iterable, total, desc, unit, initial, disable, stream, seconds)


class PlainProgress:
    """tqdm's interface, printing ``desc: n/total (p%) postfix rate ETA`` lines at most every
    ``interval`` seconds, and once at :meth:`close` when anything happened."""

    def __init__(self, iterable: Iterable[Any] | None, total: int | None, desc: str, unit: str, initial: int,
                 disable: bool, stream: TextIO, interval: float, clock=time.monotonic) -> None:
        self.iterable = iterable
        self.total = total if total is not None or iterable is None else _length(iterable)
        self.desc, self.unit, self.disable, self.stream = desc, unit, disable, stream
        self.interval, self.clock = interval, clock
        self.n = self.start_n = initial
        self.start = self.last_print = clock()
        self.postfix = ""
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.clock() - self.last_print >= self.interval:
            self._print()

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed and self.n > self.start_n:
            self._print()
        self.closed = True

    def line(self) -> str:
        """The progress line as it would be printed now."""
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = (self.n - self.start_n) / elapsed
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else str(self.n)
        parts = [f"{self.desc}: {done}" if self.desc else done, self.postfix, f"{rate:.2f} {self.unit}/s"]
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        return " ".join(p for p in parts if p)

    def _print(self) -> None:
        self.last_print = self.clock()
        if not self.disable:
            print(self.line(), file=self.stream, flush=True)


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
