"""The per-image sample every data set yields and every model consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from detseg.constants import IGNORE_INDEX
from detseg.structures.instances import Instances

__all__ = ["IGNORE_INDEX", "DetSample"]


@dataclass
class DetSample:
    """One image after data transforms.

    Attributes:
        image: ``uint8[3, H, W]`` RGB, at ``image_size`` (after transforms).
        image_id: the data set's id of the image (COCO id, VOC file stem, index).
        orig_size: ``(height, width)`` of the image file; predictions are reported here.
        gt: ground-truth objects at ``image_size``, or ``None`` for unlabeled images.
        gt_ignore: regions that are neither positives nor negatives at ``image_size``:
            COCO ``iscrowd`` groups and VOC ``difficult`` objects. ``None`` when there
            are none to speak of.
        gt_sem_seg: ``int64[H, W]`` class per pixel (0 = background), ``IGNORE_INDEX``
            where unlabeled; ``None`` for data without semantic labels.
        proposals: precomputed region proposals at ``image_size``, or ``None``.
    """

    image: Tensor
    image_id: int | str
    orig_size: tuple[int, int]
    gt: Instances | None = None
    gt_ignore: Instances | None = None
    gt_sem_seg: Tensor | None = None
    proposals: Instances | None = None

    def __post_init__(self) -> None:
        if self.image.dim() != 3 or self.image.shape[0] != 3:
            raise ValueError(f"image {self.image_id}: expected [3, H, W], got {tuple(self.image.shape)}")
        size = self.image_size
        for field in ("gt", "gt_ignore", "proposals"):
            inst = getattr(self, field)
            if inst is not None and inst.image_size != size:
                raise ValueError(
                    f"image {self.image_id}: {field} has image_size {inst.image_size}, "
                    f"image is {size}"
                )
        if self.gt_sem_seg is not None and tuple(self.gt_sem_seg.shape) != size:
            raise ValueError(
                f"image {self.image_id}: semantic map is {tuple(self.gt_sem_seg.shape)}, "
                f"image is {size}"
            )

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of ``image``."""
        return self.image.shape[1], self.image.shape[2]

    def to(self, device: torch.device | str) -> DetSample:
        return DetSample(
            image=self.image.to(device),
            image_id=self.image_id,
            orig_size=self.orig_size,
            gt=None if self.gt is None else self.gt.to(device),
            gt_ignore=None if self.gt_ignore is None else self.gt_ignore.to(device),
            gt_sem_seg=None if self.gt_sem_seg is None else self.gt_sem_seg.to(device),
            proposals=None if self.proposals is None else self.proposals.to(device),
        )
