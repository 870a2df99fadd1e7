"""Checks of annotations at the data set boundary, with messages that name the entry.

Policy (documented in datasets/README.md):

- negative width or height, or a non-finite coordinate: error;
- a box that reaches outside its image: clipped to the image, with one warning per data
  set that counts them and names the first few;
- a box that lies entirely outside its image, or has zero width or height (after
  clipping): error, because no model can learn from it and dropping it would be silent.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detseg.errors import DataError


@dataclass
class BoxChecker:
    """Validates boxes of one data set file and collects clipping notices.

    Args:
        source: the annotation file, for messages.
    """

    source: str
    clipped: list[str] = field(default_factory=list)

    def check(self, box_xyxy: np.ndarray, height: int, width: int, where: str) -> np.ndarray:
        """Return the box, clipped to ``(height, width)``; raise on invalid boxes.

        Args:
            box_xyxy: ``float[4]`` absolute pixels.
            where: what the box is, e.g. ``"annotation 17 (image 000001.jpg)"``.
        """
        x1, y1, x2, y2 = (float(v) for v in box_xyxy)
        if not np.isfinite([x1, y1, x2, y2]).all():
            raise DataError(f"{self.source}: {where}: box has non-finite coordinates {box_xyxy}")
        if x2 < x1 or y2 < y1:
            raise DataError(
                f"{self.source}: {where}: negative width or height "
                f"(x1={x1:g}, y1={y1:g}, x2={x2:g}, y2={y2:g})"
            )
        clipped = np.array(
            [min(max(x1, 0), width), min(max(y1, 0), height), min(max(x2, 0), width),
             min(max(y2, 0), height)],
            dtype=np.float32,
        )
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            raise DataError(
                f"{self.source}: {where}: box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] has no area "
                f"inside the {width}x{height} image"
            )
        if not np.allclose(clipped, [x1, y1, x2, y2]):
            self.clipped.append(f"{where}: [{x1:g}, {y1:g}, {x2:g}, {y2:g}]")
        return clipped

    def report(self) -> None:
        """Warn once about all clipped boxes."""
        if self.clipped:
            shown = "; ".join(self.clipped[:5])
            more = f" and {len(self.clipped) - 5} more" if len(self.clipped) > 5 else ""
            warnings.warn(
                f"{self.source}: {len(self.clipped)} box(es) reached outside their image and "
                f"were clipped to it: {shown}{more}",
                stacklevel=3,
            )


def check_files_exist(paths: list, source: str) -> None:
    """Raise one error listing image files that are missing, before any training starts."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise DataError(
            f"{source}: {len(missing)} image file(s) not found: {', '.join(missing[:5])}{more}"
        )


def read_skip_list(skip_files: str | list[str] | None) -> set[str]:
    """Image names to leave out of a data set: a list, or a text file with one name per line
    (as ``tools/check_data.py --skip-lists`` writes them). ``None``: nothing."""
    if skip_files is None:
        return set()
    if isinstance(skip_files, (list, tuple)):
        return {str(name) for name in skip_files}
    path = Path(skip_files)
    if not path.is_file():
        raise DataError(f"skip_files: file not found: {path}")
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}
