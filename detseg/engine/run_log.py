"""What a run logs as it goes: ``metrics.jsonl`` and TensorBoard events in its run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class RunLog:
    """Training records and evaluation metrics, one JSON line each, and as TensorBoard
    scalars (``train/<key>``, ``val/<metric>``). Only the main process writes: elsewhere
    (``enabled=False``) every call does nothing."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        self.file = open(run_dir / "metrics.jsonl", "a")

    def training(self, record: dict[str, Any]) -> None:
        """A training record: ``iteration``, ``lr``, loss terms and ``seconds``."""
        if not self.enabled:
            return
        self._write(record)
        for key, value in record.items():
            if key not in ("iteration", "seconds"):
                self.writer.add_scalar(f"train/{key}", value, record["iteration"])

    def evaluation(self, iteration: int, metrics: dict[str, float]) -> None:
        """An evaluation's metrics (NaN is written as null; per-class ``a/b`` keys are not plotted)."""
        if not self.enabled:
            return
        self._write({"iteration": iteration, "split": "val",
                     **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}})
        for key, value in metrics.items():
            if "/" not in key and not math.isnan(value):
                self.writer.add_scalar(f"val/{key}", value, iteration)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.writer.close()

    def _write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
