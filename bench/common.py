"""What every benchmark shares: the machine it ran on, pinned threads, interleaved timing.

- :func:`start` pins torch's intra-op threads (the same count for every side), prints the
  CPU (model and the avx2 / avx512f / avx512_bf16 / amx_bf16 flags that pick PyTorch's
  kernels), the versions and the load average; :func:`finish` prints the load average again.
- :func:`interleaved` times several functions in rounds, one call of each per round, the
  order alternating between rounds (A B, B A, A B, ...: ABBA; with more than two sides
  each round reverses the one before and the order rotates every two rounds), so a
  drift in machine speed (other jobs on the shared cores) lands on all sides alike.
  Warm-up rounds are run first and not kept.
- ``OMP_WAIT_POLICY`` (printed) matters on a loaded machine: with 2 threads on 2 cores
  shared with other jobs, OpenMP's default spin-waiting made a 10 ms model take ~1 s (its
  threads wait at every barrier for a partner the OS has descheduled). Set
  ``OMP_WAIT_POLICY=PASSIVE`` in the environment (before Python starts) when the load
  average is above the core count; it applies to every side alike.
- :class:`Series` / :func:`ratio` summarise: median with min-max of each side, and the
  ratio as the median of the per-round ratios (each round's two calls ran back to back,
  on the same input) with their min-max as its spread.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_description() -> str:
    """``"<model name>; avx2 yes, avx512f yes, avx512_bf16 yes, amx_bf16 no"`` from /proc/cpuinfo."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        import platform

        model = platform.processor() or model
    return f"{model}; " + ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in FLAGS)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min, {os.cpu_count()} CPUs)"


def pin_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def start(name: str, threads: int) -> None:
    """Pin ``threads`` and print what the benchmark runs on."""
    import torch

    pin_threads(threads)
    try:
        import torchvision

        tv = f", torchvision {torchvision.__version__}"
    except ImportError:
        tv = ""
    print(f"== {name}")
    print(f"CPU: {cpu_description()}")
    print(f"torch {torch.__version__}{tv}; torch.set_num_threads({threads}) on every side "
          f"(get_num_threads() = {torch.get_num_threads()}); OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset (OpenMP default: spin before sleeping)')}")
    print(f"load average at start: {load_average()}", flush=True)


def finish() -> None:
    print(f"load average at end: {load_average()}", flush=True)


def round_order(round_index: int, count: int) -> list[int]:
    """Side indices in the order of this round. Odd rounds reverse the even round before
    them, so every pair of sides swaps order from one round to the next (two sides:
    A B, B A, A B, B A: ABBA...); with more than two sides the order also rotates by one
    every two rounds, so each side is first equally often."""
    shift = (round_index // 2) % count if count > 2 else 0
    order = list(range(shift, count)) + list(range(shift))
    return order if round_index % 2 == 0 else order[::-1]


@dataclass
class Series:
    """Timings (seconds) of one side."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def ms(self) -> str:
        """``"123.4 ms (110.2-140.9)"``: median and min-max."""
        return f"{1000 * self.median:.1f} ms ({1000 * min(self.seconds):.1f}-{1000 * max(self.seconds):.1f})"

    def s(self) -> str:
        return f"{self.median:.2f} s ({min(self.seconds):.2f}-{max(self.seconds):.2f})"


@dataclass
class Ratio:
    per_round: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.per_round)

    def __str__(self) -> str:
        return f"{self.median:.3f} ({min(self.per_round):.3f}-{max(self.per_round):.3f})"


def ratio(a: Series, b: Series) -> Ratio:
    """``a / b`` per round (the rounds are paired: same input, back to back)."""
    return Ratio([x / y for x, y in zip(a.seconds, b.seconds, strict=True)])


def interleaved(sides: dict[str, Callable[[object], object]], inputs: Sequence[object], warmup: int = 1,
                on_result: Callable[[str, int, object], None] | None = None) -> dict[str, Series]:
    """Time ``sides[name](inputs[i])`` for every input, in rounds (see :func:`round_order`).

    ``warmup`` untimed rounds on ``inputs[0]`` come first. ``on_result(name, i, result)``
    sees each timed call's result (e.g. to count detections).
    """
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name](inputs[0])
    timings: dict[str, list[float]] = {name: [] for name in names}
    for i, item in enumerate(inputs):
        for k in round_order(i, len(names)):
            name = names[k]
            begin = time.perf_counter()
            result = sides[name](item)
            timings[name].append(time.perf_counter() - begin)
            if on_result is not None:
                on_result(name, i, result)
    return {name: Series(t) for name, t in timings.items()}


def counts_text(counts: Sequence[int]) -> str:
    """Detections per image: ``"100 on every image"`` or ``"median 37 (12-100)"``."""
    counts = list(counts)
    if not counts:
        return "no images"
    if min(counts) == max(counts):
        return f"{counts[0]} on every image"
    return f"median {statistics.median(counts):g} ({min(counts)}-{max(counts)})"


WORKER_PROTOCOL = "BENCH "
"""Prefix of a worker's reply lines (anything else it prints, e.g. warnings, is skipped)."""


def reply(stream, **fields) -> None:
    """A worker's reply: one ``BENCH {json}`` line on ``stream``."""
    stream.write(WORKER_PROTOCOL + json.dumps(fields) + "\n")
    stream.flush()


class WorkerPipe:
    """A bench worker process driven line by line: ``ask(command)`` writes the command to its
    stdin and returns its next :func:`reply`; the first reply is kept as ``info``."""

    def __init__(self, name: str, cmd: list[str], **popen) -> None:
        self.name = name
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                        **popen)
        self.info = self.read()

    def read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(WORKER_PROTOCOL):
                return json.loads(line[len(WORKER_PROTOCOL):])
        raise RuntimeError(f"worker {self.name} exited with {self.process.wait()}")

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()
