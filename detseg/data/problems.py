"""Problems found in a data set's files, as the format readers record them.

A reader records every problem it meets instead of stopping at the first; a data set
refuses on the errors (:func:`refuse_errors`, one :class:`DataError` line naming them) and
warns about the rest (:func:`warn_clipped`); the data doctor reports them all. The two
therefore cannot disagree.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from detseg.errors import DataError

BOX_OUTSIDE = "box outside image"
"""The kind of the one warning readers record: a box clipped to its image."""

SKIP_HINT = "tools/check_data.py lists them all and writes skip_files lists"


@dataclass(frozen=True)
class Problem:
    """One problem in a data set's files.

    Attributes:
        level: ``error`` (data sets refuse, training stops) or ``warning`` (reported, and
            the data is used as the reader left it, e.g. a box clipped to its image).
        kind: what sort of problem, e.g. ``degenerate box``; the doctor groups by it.
        path: the file at fault (annotation file, label file, image or label map).
        detail: what is wrong.
        entry: the entry in that file, e.g. ``annotation 3 (image a.jpg)``, ``object 0``,
            ``line 4``; empty when the problem is the file itself.
        image: the image it concerns, as the data set names it (what ``skip_files``
            lists), or None when it concerns no single image.
    """

    level: Literal["error", "warning"]
    kind: str
    path: str
    detail: str
    entry: str = ""
    image: str | None = None

    @property
    def file(self) -> str:
        """The file and, for a problem of one entry, the entry: ``a.json: annotation 3 (image x.jpg)``."""
        return f"{self.path}: {self.entry}" if self.entry else self.path

    @property
    def text(self) -> str:
        """The problem in one line: where, then what."""
        return f"{self.file}: {self.detail}"

    def __str__(self) -> str:
        return f"{self.level}: {self.kind}: {self.text}"


def refuse_errors(problems: Iterable[Problem], source: str, skip: Collection[str] = (), hint: str = "",
                  shown: int = 5) -> None:
    """Raise one :class:`DataError` (one line) naming ``source`` and the first ``shown``
    errors (those of images in ``skip`` aside), ending with ``hint``; do nothing when
    there are none."""
    errors = [p for p in problems if p.level == "error" and (p.image is None or p.image not in skip)]
    if errors:
        listed = "; ".join(f"{p.kind}: {p.text}" for p in errors[:shown])
        more = f"; and {len(errors) - shown} more" if len(errors) > shown else ""
        raise DataError(f"{source}: {len(errors)} error(s): {listed}{more}" + (f" ({hint})" if hint else ""))


def warn_clipped(problems: Iterable[Problem], source: str, shown: int = 5) -> None:
    """One ``UserWarning`` counting the boxes that were clipped to their image and naming
    the first ``shown``; nothing when there are none."""
    clipped = [p for p in problems if p.level == "warning" and p.kind == BOX_OUTSIDE]
    if clipped:
        listed = "; ".join(p.text for p in clipped[:shown])
        more = f" and {len(clipped) - shown} more" if len(clipped) > shown else ""
        warnings.warn(f"{source}: {len(clipped)} box(es) reached outside their image and were clipped to it: "
                      f"{listed}{more}", stacklevel=3)
