"""What a data set reads for one image, before transforms, as numpy arrays.

Data sets produce an :class:`ImageRecord`; transforms map records to records; the last
step turns a record into the model-facing :class:`~detseg.structures.DetSample`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from detseg.structures import Boxes, DetSample, Instances


@dataclass
class ImageRecord:
    """One image and its annotations in numpy.

    Attributes:
        image: ``uint8[H, W, 3]`` RGB.
        image_id: the data set's id for the image.
        orig_size: ``(height, width)`` of the file as read.
        boxes: ``float32[N, 4]`` xyxy absolute pixels.
        labels: ``int64[N]`` in ``0..C-1``.
        ignore: ``bool[N]``; True for crowd / difficult regions (see ``DetSample.gt_ignore``).
        masks: ``uint8[N, H, W]`` instance masks (0/1), or ``None``.
        sem_seg: ``uint8[H, W]`` class per pixel with 255 = ignore, or ``None``.
        proposals: ``float32[P, 4]`` xyxy region proposals (best first), or ``None``.
        proposal_scores: ``float32[P]`` their scores, when there are proposals.
    """

    image: np.ndarray
    image_id: int | str
    orig_size: tuple[int, int]
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    masks: np.ndarray | None = None
    sem_seg: np.ndarray | None = None
    proposals: np.ndarray | None = None
    proposal_scores: np.ndarray | None = None

    @classmethod
    def unlabeled(cls, image: np.ndarray, image_id: int | str) -> ImageRecord:
        return cls(
            image=image,
            image_id=image_id,
            orig_size=(image.shape[0], image.shape[1]),
            boxes=np.zeros((0, 4), np.float32),
            labels=np.zeros(0, np.int64),
            ignore=np.zeros(0, bool),
        )

    def replace(self, **changes) -> ImageRecord:
        return dataclasses.replace(self, **changes)

    def to_sample(self, with_instances: bool = True) -> DetSample:
        """Tensors for the model; ground truth and ignore regions split by ``ignore``."""
        height, width = self.image.shape[:2]
        image = torch.from_numpy(np.ascontiguousarray(self.image.transpose(2, 0, 1)))
        gt = gt_ignore = None
        if with_instances:
            masks = None if self.masks is None else torch.from_numpy(self.masks.astype(bool))
            everything = Instances(
                boxes=Boxes(torch.from_numpy(self.boxes.astype(np.float32)).reshape(-1, 4)),
                labels=torch.from_numpy(self.labels.astype(np.int64)),
                image_size=(height, width),
                masks=masks,
            )
            ignore = torch.from_numpy(self.ignore.astype(bool))
            gt = everything[~ignore]
            gt_ignore = everything[ignore] if bool(ignore.any()) else None
        sem_seg = None
        if self.sem_seg is not None:
            sem_seg = torch.from_numpy(self.sem_seg.astype(np.int64))
        proposals = None
        if self.proposals is not None:
            proposals = Instances(
                boxes=Boxes(torch.from_numpy(self.proposals.astype(np.float32)).reshape(-1, 4)),
                labels=torch.zeros(len(self.proposals), dtype=torch.int64),
                image_size=(height, width),
                scores=torch.from_numpy(self.proposal_scores.astype(np.float32)),
            )
        return DetSample(
            image=image,
            image_id=self.image_id,
            orig_size=self.orig_size,
            gt=gt,
            gt_ignore=gt_ignore,
            gt_sem_seg=sem_seg,
            proposals=proposals,
        )
