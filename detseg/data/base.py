"""The base class of detection / segmentation data sets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.utils.data

from detseg.constants import IGNORE_INDEX
from detseg.data.export import record_entry
from detseg.data.formats.coco import coco_dict
from detseg.data.formats.entries import LabeledSet
from detseg.data.record import ImageRecord
from detseg.structures import DetSample

if TYPE_CHECKING:
    from detseg.proposals.files import ProposalAttacher

Transform = Callable[[ImageRecord, int | None], ImageRecord]
"""Maps a record to a record; the int, when given, seeds its random choices."""


@dataclass(frozen=True)
class ImageSummary:
    """What class-balanced sampling and aspect-ratio grouping need of one image.

    Attributes:
        height, width: of the image file, in pixels.
        labels: ``int64[N]`` classes of its objects, ignored (crowd / difficult) ones left
            out; for a data set of label maps only, the values its map holds.
    """

    height: int
    width: int
    labels: np.ndarray


class DetectionDataset(torch.utils.data.Dataset):
    """Yields one :class:`DetSample` per image.

    Subclasses implement ``__len__``, :meth:`load` (the raw record of image ``i``) and
    set ``class_names``; ``category_ids[label]`` gives the external id of each label.

    Args:
        transforms: applied to each record before it becomes a sample. A pipeline with a
            ``mosaic`` is bound to the data set, which it draws the mosaic's other images from.
    """

    class_names: list[str]
    category_ids: list[int]
    has_instances: bool = True

    def __init__(self, transforms: Transform | None = None) -> None:
        self.transforms = transforms
        self.proposals: ProposalAttacher | None = None
        self._kept: dict[int, ImageRecord] | None = None
        if hasattr(transforms, "bind"):
            transforms.bind(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if hasattr(self.transforms, "bind"):  # a loader worker's copy: its pipeline draws from this copy
            self.transforms.bind(self)

    def close_mosaic(self) -> bool:
        """Turn off the transforms that ``data.train.close_mosaic`` closes (mosaic, random
        affine) for the rest of the run; True when there were any. A loader built after the
        call hands its workers the data set as it is now."""
        close = getattr(self.transforms, "close_mosaic", None)
        return bool(close()) if close is not None else False

    def keep_records(self) -> None:
        """From now on keep each image's record (decoded pixels, annotations) after its first
        load, so later epochs skip reading and decoding the file. For data sets that fit in
        memory (a few hundred images: coco128's decoded JPEGs take about 120 MB); each loader
        worker keeps its own. The kept arrays are read-only: a transform that wrote into its
        input in place would fail loudly instead of changing the next epoch's image."""
        self._kept = {}

    def _record(self, index: int) -> ImageRecord:
        if self._kept is None:
            return self.load(index)
        record = self._kept.get(index)
        if record is None:
            record = self.load(index)
            for value in vars(record).values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False
            self._kept[index] = record
        return record

    def untransformed(self, index: int) -> ImageRecord:
        """Image ``index``'s record before the transforms (kept ones from memory), with its
        proposals when the data set has a proposal file."""
        record = self._record(index)
        if self.proposals is not None:
            boxes, scores = self.proposals(record.image_id, *record.image.shape[:2])
            record = record.replace(proposals=boxes, proposal_scores=scores)
        return record

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> ImageRecord:
        raise NotImplementedError

    def summary(self, index: int) -> ImageSummary:
        """Size and classes of image ``index``. This default reads the whole record;
        data sets that know them from their annotation files answer without the pixels."""
        record = self.load(index)
        if self.has_instances:
            labels = record.labels[~record.ignore]
        else:
            labels = np.unique(record.sem_seg) if record.sem_seg is not None else np.zeros(0, np.int64)
            labels = labels[labels != IGNORE_INDEX].astype(np.int64)
        return ImageSummary(*record.orig_size, labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def semantic_class_names(self) -> list[str]:
        """Names of the semantic-map values: 0 is background, ``label + 1`` each class."""
        return ["background", *self.class_names]

    def __getitem__(self, index: int | tuple[int, int]) -> DetSample:
        """Sample ``index``; ``(index, seed)`` also fixes the augmentation's random choices
        (the training sampler passes seeds so that a resumed run sees the same data)."""
        index, seed = index if isinstance(index, tuple) else (index, None)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        record = self.untransformed(index)
        if self.transforms is not None:
            record = self.transforms(record, seed)
        return record.to_sample(with_instances=self.has_instances)

    def coco_ground_truth(self) -> dict[str, Any]:
        """The untransformed annotations as a COCO instances dict (for evaluation):
        ``ignore`` objects are ``iscrowd``, masks RLE with ``area`` = mask pixels.

        The default reads every record; subclasses with annotation files override it.
        """
        entries = [record_entry(record, f"{record.image_id:06d}.jpg", pixels=False)
                   for record in (self.load(index) for index in range(len(self)))]
        return coco_dict(LabeledSet(list(self.class_names), entries, category_ids=list(self.category_ids)))
