"""Write a data set (any :class:`~detseg.data.base.DetectionDataset`, e.g. the synthetic
shapes) to disk in COCO or Pascal VOC layout, through each format's one writer.

COCO::

    OUT/<split>/<image id:06d>.jpg
    OUT/annotations/instances_<split>.json      (RLE masks, area = mask pixels)

VOC::

    OUT/JPEGImages/<split>_<id:06d>.jpg   OUT/Annotations/<split>_<id:06d>.xml
    OUT/SegmentationClass/<...>.png (palette)   OUT/SegmentationObject/<...>.png
    OUT/ImageSets/{Main,Segmentation}/<split>.txt   OUT/class_names.txt
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detseg.data.formats import coco, voc
from detseg.data.formats.entries import Annotation, ImageEntry, LabeledSet
from detseg.data.record import ImageRecord
from detseg.progress import progress
from detseg.structures.masks import mask_to_rle

if TYPE_CHECKING:
    from detseg.data.base import DetectionDataset


def record_entry(record: ImageRecord, file_name: str, name: str | None = None, pixels: bool = True) -> ImageEntry:
    """A data set's record as a neutral entry named ``name`` (default: ``file_name``):
    its boxes (xyxy absolute pixels), labels, ``ignore`` as ``iscrowd``, instance masks as
    RLE with ``area`` = mask pixels, its semantic map, and (with ``pixels``) its image
    for writers to encode as ``file_name``."""
    height, width = record.orig_size
    annotations = []
    for i, (box, label, crowd) in enumerate(zip(record.boxes, record.labels, record.ignore)):
        mask = None if record.masks is None else record.masks[i]
        annotations.append(Annotation(np.asarray(box, np.float64), int(label), bool(crowd),
                                      None if mask is None else mask_to_rle(mask),
                                      None if mask is None else float(np.count_nonzero(mask))))
    return ImageEntry(Path(file_name), name or file_name, record.image_id, width, height, annotations,
                      pixels=record.image if pixels else None, sem_seg=record.sem_seg)


def _entries(dataset: DetectionDataset, desc: str, names) -> LabeledSet:
    """Every record of ``dataset`` as an entry; ``names(record)`` gives ``(file_name, name)``."""
    entries = []
    for index in progress(range(len(dataset)), desc=desc, unit="img", leave=False):
        record = dataset.load(index)
        entries.append(record_entry(record, *names(record)))
    return LabeledSet(list(dataset.class_names), entries, category_ids=list(dataset.category_ids))


def export_coco(dataset: DetectionDataset, out: str | Path, split: str, image_ext: str = ".jpg") -> Path:
    """Write images and ``annotations/instances_<split>.json``; returns the JSON path."""
    out = Path(out)
    labeled = _entries(dataset, f"coco {split}", lambda r: (f"{r.image_id:06d}{image_ext}", None))
    return coco.write_coco(labeled, out / "annotations" / f"instances_{split}.json", out / split)


def export_voc(dataset: DetectionDataset, out: str | Path, split: str) -> Path:
    """Write a VOC layout (with label maps when the data set has them); returns the
    split's ``ImageSets/Main`` list file."""
    labeled = _entries(dataset, f"voc {split}",
                       lambda r: (f"{split}_{r.image_id:06d}.jpg", f"{split}_{r.image_id:06d}"))
    return voc.write_voc(labeled, out, split)

