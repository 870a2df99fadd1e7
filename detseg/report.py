"""Plain-text tables of metrics for the terminal, and JSON output."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from detseg.evaluation.base import nest_per_class


def format_metrics(metrics: dict[str, float], title: str = "") -> str:
    """Overall numbers on top, then one row per class with its per-class metrics."""
    nested = nest_per_class(metrics)
    per_class = nested.pop("per_class", {})
    lines = [title] if title else []
    width = max((len(k) for k in nested), default=0)
    lines += [f"  {k:<{width}}  {_fmt(v)}" for k, v in nested.items()]
    if per_class:
        columns = list(dict.fromkeys(m for values in per_class.values() for m in values))
        name_width = max(len("class"), *(len(n) for n in per_class))
        lines.append("")
        lines.append(f"  {'class':<{name_width}}  " + "  ".join(f"{c:>7}" for c in columns))
        for name, values in per_class.items():
            lines.append(f"  {name:<{name_width}}  "
                         + "  ".join(f"{_fmt(values.get(c, math.nan)):>7}" for c in columns))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "    n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def write_metrics_json(metrics: dict[str, float], path: str | Path, **extra: Any) -> None:
    """Write ``metrics`` (per-class keys nested under ``per_class``); NaN becomes ``null``."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean({**nest_per_class(metrics), **extra}), indent=2) + "\n")
