"""The one check of an annotated box, and the skip lists that leave images out.

Policy (documented in datasets/README.md):

- a non-finite coordinate, or negative or zero width or height: error (``degenerate box``);
- a box that lies entirely outside its image (no area inside it): error;
- a box that reaches outside its image: clipped to the image, with a warning (data sets
  give one warning per data set that counts them and names the first few).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from detseg.data.problems import BOX_OUTSIDE
from detseg.errors import DataError


class BoxIssue(NamedTuple):
    """What :func:`check_box` found: a :class:`~detseg.data.problems.Problem` without its place."""

    level: Literal["error", "warning"]
    kind: str
    detail: str


def check_box(box_xyxy: np.ndarray, width: int, height: int,
              image: str = "the image") -> tuple[np.ndarray | None, BoxIssue | None]:
    """Check one box against its image.

    Args:
        box_xyxy: ``float[4]`` xyxy in absolute pixels, continuous (a box over pixels 0..9
            is ``[0, 10)``).
        width, height: the image's size in pixels.
        image: how messages name the image, e.g. ``"image 7"``.

    Returns:
        ``(box, issue)``: the box clipped to the image as ``float64[4]``, or None when it is
        rejected (an error); the issue, or None when the box is fine.
    """
    box = np.asarray(box_xyxy, np.float64).reshape(4)
    shown = "[" + ", ".join(f"{float(v):g}" for v in box) + "]"
    inside = f"{image} ({width}x{height})"
    if not np.isfinite(box).all():
        return None, BoxIssue("error", "degenerate box", f"non-finite coordinates: box {shown} in {inside}")
    if box[2] < box[0] or box[3] < box[1]:
        return None, BoxIssue("error", "degenerate box", f"negative width or height: box {shown} in {inside}")
    if box[2] == box[0] or box[3] == box[1]:
        return None, BoxIssue("error", "degenerate box", f"zero width or height: box {shown} in {inside}")
    clipped = np.clip(box, 0, [width, height, width, height])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return None, BoxIssue("error", BOX_OUTSIDE, f"box {shown} lies outside {inside}: no area inside it")
    if not np.allclose(clipped, box):  # float noise at the border (e.g. from YOLO's fractions) is no news
        return clipped, BoxIssue("warning", BOX_OUTSIDE, f"box {shown} reaches outside {inside}; clipped to it")
    return clipped, None


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
