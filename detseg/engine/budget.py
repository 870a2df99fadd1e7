"""A training time budget (``train.max_time``, minutes).

With a budget the run ends on time rather than at ``train.max_iters``: the loop stops when
one more iteration would end past the budget, were it as long as the last one or as this
run's mean so far (periodic evaluations and checkpoints included), whichever is longer; then the final evaluation runs (its time is not in
the budget). The LR schedule is laid out over the budget: it reads
``elapsed / budget`` where an iteration-based run reads ``iteration / max_iters``
(:func:`~detseg.engine.optim.lr_factor`), so a cosine decay reaches its end as time runs out
whatever the speed of the machine. The time spent is kept in checkpoints: a resumed run
continues the budget where the killed one left it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class TimeBudget:
    """Seconds spent against a budget of ``minutes``, measured by ``clock`` (seconds,
    monotonic) from :meth:`start`, plus what earlier runs of a resumed training spent."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = 60.0 * minutes
        self.clock = clock
        self.spent_before = 0.0
        self.started: float | None = None
        self.steps, self.last_step, self.last_mark = 0, 0.0, 0.0

    def start(self) -> None:
        self.started = self.last_mark = self.clock()
        self.steps, self.last_step = 0, 0.0

    def step(self) -> None:
        """One more iteration done (for the time :attr:`spent` expects the next one to take)."""
        now = self.clock()
        self.steps, self.last_step, self.last_mark = self.steps + 1, now - self.last_mark, now

    @property
    def elapsed(self) -> float:
        """Seconds spent: before this run, and since :meth:`start` (0 before it)."""
        return self.spent_before + (0.0 if self.started is None else self.clock() - self.started)

    def fraction(self) -> float:
        """The share of the budget spent, in [0, 1]."""
        return min(self.elapsed / self.seconds, 1.0)

    @property
    def spent(self) -> bool:
        """One more iteration, as long as the last one or this run's mean (the longer),
        would end past the budget."""
        mean = (self.elapsed - self.spent_before) / self.steps if self.steps else 0.0
        return self.elapsed + max(mean, self.last_step) > self.seconds

    def describe(self) -> str:
        """``3m10s/10m``: spent and budget, for the progress line."""
        return f"{_minutes(self.elapsed)}/{_minutes(self.seconds)}"

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.spent_before, self.started = float(state["elapsed"]), None


def _minutes(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
