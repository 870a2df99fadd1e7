"""SSD's "zoom in" augmentation (Liu et al. 2016, section 2.2 "Data augmentation") as an
albumentations transform, so it composes with the others in a config's ``transforms``.

The rest of SSD's pipeline is made of albumentations' own transforms (see
``configs/data/voc_ssd.yaml``): photometric distortions (``random_brightness_contrast``,
``hue_saturation_value``), "zoom out" (``crop_and_pad`` with positive percentages and
``keep_size: false``: the image on a canvas up to 4x its size, filled with the mean
colour) and ``horizontal_flip``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from albumentations.augmentations.crops.transforms import BaseCrop

from detseg.ops.boxes import box_iou
from detseg.registry import TRANSFORMS


@TRANSFORMS.register("min_iou_random_crop")
class MinIoURandomCrop(BaseCrop):
    """Crop a random patch that overlaps some object by at least a randomly chosen IoU.

    Each call picks one of ``min_ious`` (1.0: keep the whole image; 0.0: any patch), then
    tries up to ``trials`` patches of width and height ``scale`` x the image's, with
    aspect ratio in ``aspect_ratio``, until one has IoU >= the choice with an object whose
    centre lies in it. Objects whose centre falls outside the patch are dropped (their
    boxes become empty, which the pipeline's ``min_box_size`` removes), as in the paper.
    When no patch is found the image is kept whole.
    """

    def __init__(
        self,
        min_ious: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
        scale: tuple[float, float] = (0.3, 1.0),
        aspect_ratio: tuple[float, float] = (0.5, 2.0),
        trials: int = 40,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"min_iou_random_crop: scale must satisfy 0 < min <= max <= 1, got {scale}")
        self.min_ious = [float(v) for v in min_ious]
        self.scale = tuple(scale)
        self.aspect_ratio = tuple(aspect_ratio)
        self.trials = trials

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        whole = (0, 0, width, height)
        boxes = np.asarray(data.get("bboxes", np.zeros((0, 4))))[:, :4] * [width, height, width, height]
        min_iou = self.py_random.choice(self.min_ious)
        if min_iou >= 1.0 or len(boxes) == 0:
            return {"crop_coords": whole}
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        for _ in range(self.trials):
            crop_w = int(width * self.py_random.uniform(*self.scale))
            crop_h = int(height * self.py_random.uniform(*self.scale))
            if crop_w < 1 or crop_h < 1 or not self.aspect_ratio[0] <= crop_w / crop_h <= self.aspect_ratio[1]:
                continue
            left = int(self.py_random.uniform(0, width - crop_w))
            top = int(self.py_random.uniform(0, height - crop_h))
            x1, y1, x2, y2 = left, top, left + crop_w, top + crop_h
            inside = (centres[:, 0] > x1) & (centres[:, 0] < x2) & (centres[:, 1] > y1) & (centres[:, 1] < y2)
            if not inside.any():
                continue
            crop = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float64)
            iou = box_iou(torch.as_tensor(boxes, dtype=torch.float64), crop)[:, 0].numpy()
            if iou[inside].max() >= min_iou:
                return {"crop_coords": (x1, y1, x2, y2)}
        return {"crop_coords": whole}

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        height, width = params["shape"][:2]
        x1, y1, x2, y2 = crop_coords
        centres_x = (bboxes[:, 0] + bboxes[:, 2]) / 2 * width
        centres_y = (bboxes[:, 1] + bboxes[:, 3]) / 2 * height
        outside = (centres_x <= x1) | (centres_x >= x2) | (centres_y <= y1) | (centres_y >= y2)
        cropped = super().apply_to_bboxes(bboxes, crop_coords, **params).copy()
        if (x1, y1, x2, y2) != (0, 0, width, height):
            cropped[outside, 2:4] = cropped[outside, 0:2]  # empty: dropped by the size filter
        return cropped

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_ious", "scale", "aspect_ratio", "trials")
