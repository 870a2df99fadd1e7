"""Random affine augmentation (scale, translate; rotation and shear optional) as one-stage
detectors train with it (Ultralytics' ``RandomPerspective`` without perspective).

It is albumentations' ``Affine`` (image, masks, boxes and semantic map with one matrix; masks
nearest) with YOLO's defaults and one addition: an object whose box, after the transform,
has less than ``min_visibility`` of its area inside the image is dropped with its mask
(albumentations alone keeps any box wider and taller than ``min_box_size`` after clipping).
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

from detseg.registry import TRANSFORMS


@TRANSFORMS.register("random_affine")
class RandomAffine(A.Affine):
    """Scale about the image centre, then translate (and rotate / shear, off by default).

    Args:
        scale: ``[low, high]`` zoom factor, drawn uniformly (YOLOv8: 0.5..1.5).
        translate: the shift, drawn uniformly in ``[-translate, translate]`` x the image side
            on each axis (YOLOv8: 0.1); a ``[low, high]`` pair draws in that range.
        rotate: degrees counter-clockwise, drawn in ``[-rotate, rotate]`` (0: none) or a
            ``[low, high]`` range.
        shear: degrees, drawn in ``[-shear, shear]`` on each axis (0: none) or a range.
        min_visibility: objects with a smaller share of their transformed box inside the
            image are dropped with their masks.
        fill: image colour where no pixel maps (Ultralytics' grey 114).
        fill_mask: mask and semantic-map value there (255: ignore in a semantic map;
            instance masks count only 1 as inside).
        rotate_method: how a rotated box is bounded (``largest_box``: the rotated corners;
            ``ellipse``: the inscribed ellipse, tighter).
        p: the chance of applying it.
    """

    closes_with_mosaic = True
    """Turned off with the mosaic by ``data.train.close_mosaic``."""

    def __init__(
        self,
        scale: tuple[float, float] = (0.5, 1.5),
        translate: float | tuple[float, float] = 0.1,
        rotate: float | tuple[float, float] = 0.0,
        shear: float | tuple[float, float] = 0.0,
        min_visibility: float = 0.1,
        fill: int = 114,
        fill_mask: int = 255,
        rotate_method: str = "largest_box",
        p: float = 1.0,
    ) -> None:
        if not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"random_affine: min_visibility is in [0, 1], got {min_visibility}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"random_affine: scale is [low, high] with 0 < low <= high, got {list(scale)}")
        super().__init__(scale=tuple(scale), translate_percent=_range(translate), rotate=_range(rotate),
                         shear=_range(shear), fill=fill, fill_mask=fill_mask, border_mode=cv2.BORDER_CONSTANT,
                         rotate_method=rotate_method, p=p)
        self.min_visibility = float(min_visibility)
        self.settings = {"scale": list(scale), "translate": translate, "rotate": rotate, "shear": shear}

    def apply_to_bboxes(self, bboxes: np.ndarray, bbox_matrix: np.ndarray, output_shape: tuple[int, int],
                        **params: Any) -> np.ndarray:
        """The transformed boxes (normalised xyxy), those below ``min_visibility`` made empty
        so that the pipeline's size filter drops them with their masks."""
        moved = np.array(super().apply_to_bboxes(bboxes, bbox_matrix, output_shape, **params), dtype=np.float64)
        if len(moved) == 0:
            return moved
        area = (moved[:, 2] - moved[:, 0]).clip(0) * (moved[:, 3] - moved[:, 1]).clip(0)
        inside = np.clip(moved[:, :4], 0.0, 1.0)
        visible = (inside[:, 2] - inside[:, 0]).clip(0) * (inside[:, 3] - inside[:, 1]).clip(0)
        share = np.divide(visible, area, out=np.zeros(len(moved)), where=area > 0)
        hidden = share < self.min_visibility
        moved[hidden, 2:4] = moved[hidden, 0:2]
        return moved

    def __repr__(self) -> str:
        return f"RandomAffine({self.settings}, min_visibility={self.min_visibility})"


def _range(value: float | tuple[float, float]) -> tuple[float, float]:
    """``[-v, v]`` for a number, the pair itself for a pair."""
    if isinstance(value, (int, float)):
        return (-float(value), float(value))
    low, high = value
    if low > high:
        raise ValueError(f"random_affine: a range is [low, high] with low <= high, got {list(value)}")
    return (float(low), float(high))
