"""Data augmentation: albumentations pipelines built from config, box- and mask-aware.

A config lists transforms by registry name with albumentations' own keyword arguments::

    transforms:
      - {name: random_scale, scale_limit: [-0.3, 0.3], p: 1.0}
      - {name: horizontal_flip, p: 0.5}
      - {name: color_jitter, brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.02}

Boxes, instance masks and the semantic map move with the image. A box whose clipped
width or height falls below ``min_box_size`` pixels is dropped together with its mask
(it has left the image). Three transforms of our own drop more, each as its docstring says:
``mosaic`` (:mod:`detseg.data.mosaic`) and ``random_affine`` (:mod:`detseg.data.affine`)
objects left less than ``min_visibility`` visible, ``min_iou_random_crop``
(:mod:`detseg.data.ssd_augment`) objects whose centre leaves the crop.

``data.train.close_mosaic: N`` turns ``mosaic`` and ``random_affine`` off for the last N
training iterations (:meth:`TransformPipeline.close_mosaic`, called by the trainer).
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never phone home at import

import albumentations as A
import numpy as np

from detseg.config import build
from detseg.data.affine import RandomAffine
from detseg.data.mosaic import Mosaic, RecordSource
from detseg.data.record import ImageRecord
from detseg.errors import ConfigError
from detseg.registry import TRANSFORMS

MOSAIC_STREAM = 0x6D6F
"""Mixed with a sample's seed for the mosaic's random choices (albumentations takes the seed itself)."""

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
    """Applies transforms to an :class:`ImageRecord`: albumentations transforms, and a
    :class:`~detseg.data.mosaic.Mosaic` first when there is one.

    Args:
        transforms: in order; a mosaic only first (it reads raw records of the data set
            the pipeline is bound to, see :meth:`bind`).
        min_box_size: boxes narrower or shorter than this (pixels) after a transform are
            dropped with their masks.
        seed: seeds the random stream (``None``: fresh randomness).
    """

    def __init__(
        self, transforms: list[Any], min_box_size: float = 1.0, seed: int | None = None
    ) -> None:
        self.transforms = list(transforms)
        misplaced = [i for i, t in enumerate(self.transforms) if isinstance(t, Mosaic) and i > 0]
        if misplaced:
            raise ValueError(f"[{misplaced[0]}]: mosaic must be the first transform (it combines raw images "
                             f"of the data set; the transforms after it see the mosaic)")
        self.min_box_size = min_box_size
        self.mosaic_closed = False
        self.source: RecordSource | None = None
        self._rng = np.random.default_rng(seed)
        self._build(seed)

    def _build(self, seed: int | None) -> None:
        active = [t for t in self.transforms if not (self.mosaic_closed and getattr(t, "closes_with_mosaic", False))]
        self.mosaic = active[0] if active and isinstance(active[0], Mosaic) else None
        rest = active[1:] if self.mosaic is not None else active
        self.compose = None if not rest else A.Compose(
            rest,
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["indices"],
                min_width=self.min_box_size,
                min_height=self.min_box_size,
                clip=True,
            ),
            seed=seed,
        )

    def bind(self, source: RecordSource) -> None:
        """Draw a mosaic's other images from ``source`` (the data set that applies the pipeline)."""
        self.source = source

    @property
    def has_mosaic(self) -> bool:
        """Whether the pipeline holds transforms that ``close_mosaic`` turns off."""
        return any(getattr(t, "closes_with_mosaic", False) for t in self.transforms)

    def close_mosaic(self) -> bool:
        """Turn off the mosaic and the random affine for good (``data.train.close_mosaic``);
        True when there was something to turn off."""
        if self.mosaic_closed or not self.has_mosaic:
            return False
        self.mosaic_closed = True
        self._build(None)
        return True

    def __call__(self, record: ImageRecord, seed: int | None = None) -> ImageRecord:
        """Transform ``record``; a ``seed`` makes the random choices a function of it."""
        if self.mosaic is not None:
            if self.source is None:
                raise ValueError("mosaic: the pipeline is not bound to a data set to draw images from "
                                 "(a DetectionDataset binds its transforms)")
            rng = self._rng if seed is None else np.random.default_rng([seed, MOSAIC_STREAM])
            record = self.mosaic.apply_record(record, rng, self.source)
        if self.compose is None:
            return record
        if seed is not None:
            self.compose.set_random_seed(seed)
        return self._albumentations(record)

    def _albumentations(self, record: ImageRecord) -> ImageRecord:
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

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "source": None}  # the data set re-binds itself; no copy of it travels

    def __repr__(self) -> str:
        closed = ", mosaic closed" if self.mosaic_closed else ""
        return f"TransformPipeline({[type(t).__name__ for t in self.transforms]}{closed})"


def build_transforms(nodes: list, path: str = "transforms", seed: int | None = None) -> TransformPipeline:
    """Build a pipeline from config nodes ``[{name: ..., **kwargs}, ...]``."""
    transforms = [build(node, TRANSFORMS, f"{path}[{i}]") for i, node in enumerate(nodes or [])]
    try:
        return TransformPipeline(transforms, seed=seed)
    except ValueError as exc:
        raise ConfigError(f"{path}{exc}") from None


__all__ = ["Mosaic", "RandomAffine", "TransformPipeline", "build_transforms"]
