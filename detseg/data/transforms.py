"""Data augmentation: albumentations pipelines built from config, box- and mask-aware.

A config lists transforms by registry name with albumentations' own keyword arguments::

    transforms:
      - {name: random_scale, scale_limit: [-0.3, 0.3], p: 1.0}
      - {name: horizontal_flip, p: 0.5}
      - {name: color_jitter, brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.02}

Boxes, instance masks and the semantic map move with the image. A box whose clipped
width or height falls below ``min_box_size`` pixels is dropped together with its mask
(it has left the image); nothing else is ever dropped.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never phone home at import

import albumentations as A
import numpy as np

from detseg.config import build
from detseg.data.record import ImageRecord
from detseg.registry import TRANSFORMS

for _name, _cls in {
    "resize": A.Resize,
    "longest_max_size": A.LongestMaxSize,
    "smallest_max_size": A.SmallestMaxSize,
    "pad_if_needed": A.PadIfNeeded,
    "horizontal_flip": A.HorizontalFlip,
    "vertical_flip": A.VerticalFlip,
    "random_scale": A.RandomScale,
    "random_crop": A.RandomCrop,
    "center_crop": A.CenterCrop,
    "random_resized_crop": A.RandomResizedCrop,
    "random_sized_bbox_safe_crop": A.RandomSizedBBoxSafeCrop,
    "crop_and_pad": A.CropAndPad,
    "color_jitter": A.ColorJitter,
    "random_brightness_contrast": A.RandomBrightnessContrast,
    "hue_saturation_value": A.HueSaturationValue,
    "gaussian_blur": A.GaussianBlur,
    "gauss_noise": A.GaussNoise,
}.items():
    TRANSFORMS.register(_name, _cls)


class TransformPipeline:
    """Applies albumentations transforms to an :class:`ImageRecord`.

    Args:
        transforms: albumentations transforms, in order.
        min_box_size: boxes narrower or shorter than this (pixels) after a transform are
            dropped with their masks.
        seed: seeds albumentations' random stream (``None``: fresh randomness).
    """

    def __init__(
        self, transforms: list[A.BasicTransform], min_box_size: float = 1.0, seed: int | None = None
    ) -> None:
        self.transforms = list(transforms)
        if not self.transforms:
            self.compose = None
            return
        self.compose = A.Compose(
            self.transforms,
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["indices"],
                min_width=min_box_size,
                min_height=min_box_size,
                clip=True,
            ),
            seed=seed,
        )

    def __call__(self, record: ImageRecord, seed: int | None = None) -> ImageRecord:
        """Transform ``record``; a ``seed`` makes the random choices a function of it."""
        if self.compose is None:
            return record
        if seed is not None:
            self.compose.set_random_seed(seed)
        # Proposals ride along as extra boxes with indices after the ground truth's.
        num_gt = len(record.boxes)
        proposals = np.zeros((0, 4), np.float32) if record.proposals is None else record.proposals
        inputs = {
            "image": record.image,
            "bboxes": np.concatenate([record.boxes.reshape(-1, 4), proposals.reshape(-1, 4)]),
            "indices": np.arange(num_gt + len(proposals)),
        }
        if record.masks is not None and len(record.masks):
            inputs["masks"] = record.masks
        if record.sem_seg is not None:
            inputs["mask"] = record.sem_seg
        out = self.compose(**inputs)
        indices = np.asarray(out["indices"], dtype=np.int64)
        all_boxes = np.round(np.asarray(out["bboxes"], np.float32).reshape(-1, 4), 3)
        kept, kept_proposals = indices[indices < num_gt], indices[indices >= num_gt] - num_gt
        height, width = out["image"].shape[:2]
        masks = record.masks
        if masks is not None:
            # Padding may fill masks with a semantic fill value (e.g. 255); only 1 is inside.
            masks = (np.asarray(out["masks"]) == 1).astype(np.uint8)[kept] if len(masks) else \
                np.zeros((0, height, width), np.uint8)
        return record.replace(
            image=out["image"],
            boxes=all_boxes[indices < num_gt],
            labels=record.labels[kept],
            ignore=record.ignore[kept],
            masks=masks,
            sem_seg=None if record.sem_seg is None else out["mask"],
            proposals=None if record.proposals is None else all_boxes[indices >= num_gt],
            proposal_scores=None if record.proposals is None else record.proposal_scores[kept_proposals],
        )

    def __repr__(self) -> str:
        return f"TransformPipeline({[type(t).__name__ for t in self.transforms]})"


def build_transforms(nodes: list, path: str = "transforms", seed: int | None = None) -> TransformPipeline:
    """Build a pipeline from config nodes ``[{name: ..., **kwargs}, ...]``."""
    return TransformPipeline(
        [build(node, TRANSFORMS, f"{path}[{i}]") for i, node in enumerate(nodes or [])], seed=seed
    )


__all__ = ["TransformPipeline", "build_transforms"]
