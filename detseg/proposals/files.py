"""Proposal files: boxes per image id, computed once (``tools/gen_proposals.py``) and
attached to the data set's records so that transforms move them with the image.

Two formats, chosen by the file's suffix:

- ``.json``: ``{"format": "detseg-proposals", "ids": [...], "boxes": [[[x1, y1, x2, y2], ...], ...],
  "scores": [[...], ...]}``, boxes xyxy absolute pixels in the *original* image.
- ``.pkl``: Detectron2's proposal files, ``{"ids", "boxes", "objectness_logits",
  "bbox_mode"}`` with numpy arrays per image and ``bbox_mode`` 0 (XYXY_ABS) or 1
  (XYWH_ABS). It is read with an unpickler that only rebuilds numpy arrays and plain
  containers, so a file cannot run code.

Proposals keep the file's order (selective search: the paper's ranking; a learned source:
descending objectness). Selective search has no objectness, so its files store the
negated rank as the score.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from detseg.errors import DataError

FORMAT_TAG = "detseg-proposals"
XYXY_ABS, XYWH_ABS = 0, 1


@dataclass
class ProposalSet:
    """``boxes[image_id] = float32[N, 4]`` xyxy pixels and ``scores[image_id] = float32[N]``."""

    boxes: dict[int | str, np.ndarray] = field(default_factory=dict)
    scores: dict[int | str, np.ndarray] = field(default_factory=dict)
    source: str = "proposals"

    def add(self, image_id: int | str, boxes: np.ndarray, scores: np.ndarray | None = None) -> None:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if scores is None:
            scores = -np.arange(len(boxes), dtype=np.float32)  # the rank, best first
        scores = np.asarray(scores, np.float32).reshape(-1)
        if len(scores) != len(boxes):
            raise DataError(f"{self.source}: image id {image_id!r}: {len(boxes)} boxes but {len(scores)} scores")
        self.boxes[image_id] = boxes
        self.scores[image_id] = scores

    def __len__(self) -> int:
        return len(self.boxes)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.boxes

    def get(self, image_id: int | str) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes, scores)`` of one image; a missing id is a :class:`DataError` naming it."""
        if image_id not in self.boxes:
            raise DataError(
                f"{self.source}: no proposals for image id {image_id!r} ({len(self)} images in the file); "
                f"regenerate it for this data set with tools/gen_proposals.py"
            )
        return self.boxes[image_id], self.scores[image_id]


def write_proposals(path: str | Path, proposals: ProposalSet) -> None:
    """Write ``.json`` or Detectron2-style ``.pkl`` (see the module docstring)."""
    path = Path(path)
    ids = list(proposals.boxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".json":
        payload = {
            "format": FORMAT_TAG,
            "ids": ids,
            "boxes": [np.round(proposals.boxes[i], 2).tolist() for i in ids],
            "scores": [proposals.scores[i].tolist() for i in ids],
        }
        tmp.write_text(json.dumps(payload))
    elif path.suffix == ".pkl":
        payload = {
            "ids": ids,
            "boxes": [proposals.boxes[i] for i in ids],
            "objectness_logits": [proposals.scores[i] for i in ids],
            "bbox_mode": XYXY_ABS,
        }
        with open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=4)
    else:
        raise DataError(f"{path}: proposal files end in .json or .pkl")
    tmp.replace(path)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, dtypes and Detectron2's ``BoxMode`` (as an int); nothing else."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        if name == "BoxMode" and module.startswith("detectron2."):
            return int
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a proposals file")


def read_proposals(path: str | Path) -> ProposalSet:
    """Read a ``.json`` or ``.pkl`` proposal file; errors name the file and the entry."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"proposal file {path} not found; make it with "
                        f"`python tools/gen_proposals.py CONFIG --split SPLIT --out {path}`")
    if path.suffix == ".json":
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        scores_key, mode = "scores", XYXY_ABS
    elif path.suffix == ".pkl":
        try:
            payload = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise DataError(f"{path}: not a proposals pickle ({e})") from None
        scores_key = "objectness_logits"
        mode = int(payload.get("bbox_mode", XYXY_ABS)) if isinstance(payload, Mapping) else XYXY_ABS
    else:
        raise DataError(f"{path}: proposal files end in .json or .pkl")
    if not isinstance(payload, Mapping) or "ids" not in payload or "boxes" not in payload:
        raise DataError(f"{path}: expected a mapping with 'ids' and 'boxes'")
    if mode not in (XYXY_ABS, XYWH_ABS):
        raise DataError(f"{path}: bbox_mode {mode} is not supported (0 = XYXY_ABS or 1 = XYWH_ABS)")
    ids, boxes = payload["ids"], payload["boxes"]
    scores = payload.get(scores_key)
    if len(ids) != len(boxes) or (scores is not None and len(scores) != len(ids)):
        raise DataError(f"{path}: 'ids', 'boxes' and '{scores_key}' differ in length")
    result = ProposalSet(source=str(path))
    for k, image_id in enumerate(ids):
        image_id = image_id.item() if isinstance(image_id, np.generic) else image_id
        image_boxes = np.asarray(boxes[k], np.float32).reshape(-1, 4)
        if mode == XYWH_ABS:
            image_boxes = np.concatenate([image_boxes[:, :2], image_boxes[:, :2] + image_boxes[:, 2:]], axis=1)
        result.add(image_id, image_boxes, None if scores is None else scores[k])
    return result


class ProposalAttacher:
    """Looks up the proposals of a record's image id, clipped to the image.

    Boxes reaching outside the image are clipped, with one warning per file; boxes left
    without area are dropped (a proposal is a guess, not an annotation).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.proposals = read_proposals(path)
        self._warned = False

    def __call__(self, image_id: int | str, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.proposals.get(image_id)
        clipped = boxes.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
        if not self._warned and not np.array_equal(clipped, boxes):
            self._warned = True
            warnings.warn(f"{self.path}: proposals of image id {image_id!r} (and maybe others) reach outside "
                          f"the {width}x{height} image; clipped", stacklevel=2)
        keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        return clipped[keep], scores[keep]


__all__ = ["ProposalAttacher", "ProposalSet", "read_proposals", "write_proposals"]
