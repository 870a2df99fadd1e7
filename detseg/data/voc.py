"""Pascal VOC: XML detection annotations and ``SegmentationClass`` palette PNGs.

Layout (``root`` is e.g. ``VOCdevkit/VOC2012``)::

    JPEGImages/<id>.jpg   Annotations/<id>.xml   SegmentationClass/<id>.png
    ImageSets/Main/<split>.txt   ImageSets/Segmentation/<split>.txt

VOC boxes are 1-based inclusive pixel indices; they become continuous xyxy as
``(xmin - 1, ymin - 1, xmax, ymax)``, so the IoU of converted boxes equals the VOC
devkit's ``+1`` IoU on the raw numbers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from detseg.constants import IGNORE_INDEX
from detseg.data.base import DetectionDataset, ImageSummary, Transform, coco_annotations
from detseg.data.formats import read_id_list
from detseg.data.io import read_image, read_label_map
from detseg.data.record import ImageRecord
from detseg.data.validation import BoxChecker, check_files_exist, read_skip_list
from detseg.errors import DataError
from detseg.registry import DATASETS

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]
CLASS_NAMES_FILE = "class_names.txt"
"""Optional file in ``root`` with one class name per line (for non-VOC classes)."""


@dataclass
class VocObjects:
    """The objects of one XML file: ``boxes float32[N, 4]`` xyxy, ``labels``, ``difficult``."""

    file_name: str
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


def voc_palette() -> list[int]:
    """The 256-entry VOC colour map, flattened to ``[r0, g0, b0, r1, ...]``."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def parse_voc_xml(path: Path, class_names: list[str], checker: BoxChecker) -> VocObjects:
    """Read one ``Annotations/<id>.xml``; unknown class names and bad boxes raise."""
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{path}: invalid XML ({exc})") from exc
    size = root.find("size")
    try:
        width = int(size.findtext("width"))
        height = int(size.findtext("height"))
    except (AttributeError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: missing or invalid <size>") from exc
    boxes, labels, difficult = [], [], []
    for i, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in class_names:
            raise DataError(f"{path}: object {i}: unknown class '{name}' (classes: {class_names})")
        bndbox = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(bndbox.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: object {i} ('{name}'): missing or invalid <bndbox>") from exc
        box = checker.check(np.array([xmin - 1, ymin - 1, xmax, ymax]), height, width,
                            f"object {i} ('{name}') in {path.name}")
        boxes.append(box)
        labels.append(class_names.index(name))
        difficult.append(obj.findtext("difficult", "0").strip() == "1")
    return VocObjects(
        file_name=root.findtext("filename") or f"{path.stem}.jpg",
        height=height,
        width=width,
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        labels=np.array(labels, np.int64),
        difficult=np.array(difficult, bool),
    )


def read_class_names(root: Path, class_names: list[str] | None) -> list[str]:
    if class_names is not None:
        return list(class_names)
    listed = root / CLASS_NAMES_FILE
    if listed.is_file():
        return [line.strip() for line in listed.read_text().splitlines() if line.strip()]
    return list(VOC_CLASSES)


@DATASETS.register("voc")
class VocDataset(DetectionDataset):
    """Pascal VOC detection (``task: detection``) or semantic segmentation (``segmentation``).

    Detection: ``difficult`` objects become ignore regions (left out of AP, as in the
    devkit). Segmentation: the semantic map holds 0 = background, ``label + 1`` for
    classes, 255 = void.

    Args:
        root: the ``VOC20XX`` folder.
        split: a file name in ``ImageSets/Main`` (detection) or ``ImageSets/Segmentation``.
        task: ``detection`` or ``segmentation``.
        class_names: defaults to ``root/class_names.txt`` if present, else the 20 VOC classes.
        skip_files: image ids to leave out, or a file listing them.
        transforms: applied to each record.
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        task: Literal["detection", "segmentation"] = "detection",
        class_names: list[str] | None = None,
        skip_files: str | list[str] | None = None,
        transforms: Transform | None = None,
    ) -> None:
        super().__init__(transforms)
        self.root = Path(root)
        self.split = split
        self.task = task
        self.class_names = read_class_names(self.root, class_names)
        self.category_ids = list(range(1, len(self.class_names) + 1))
        self.has_instances = task == "detection"
        list_dir = "Main" if task == "detection" else "Segmentation"
        list_file = self.root / "ImageSets" / list_dir / f"{split}.txt"
        skip = read_skip_list(skip_files)
        self.ids = [i for i in read_id_list(list_file, self.root) if i not in skip]
        self.image_paths = [self.root / "JPEGImages" / f"{i}.jpg" for i in self.ids]
        check_files_exist(self.image_paths, str(list_file))
        self.objects: list[VocObjects] | None = None
        if task == "detection":
            checker = BoxChecker(str(self.root / "Annotations"))
            self.objects = [
                parse_voc_xml(self.root / "Annotations" / f"{i}.xml", self.class_names, checker)
                for i in self.ids
            ]
            checker.report()

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> ImageRecord:
        image = read_image(self.image_paths[index])
        record = ImageRecord.unlabeled(image, image_id=index + 1)
        if self.objects is not None:
            objects = self.objects[index]
            if image.shape[:2] != (objects.height, objects.width):
                raise DataError(
                    f"{self.image_paths[index]} is {image.shape[1]}x{image.shape[0]} but its XML "
                    f"says {objects.width}x{objects.height}"
                )
            record = record.replace(boxes=objects.boxes, labels=objects.labels,
                                    ignore=objects.difficult)
        else:
            path = self.root / "SegmentationClass" / f"{self.ids[index]}.png"
            labels = read_label_map(path)
            if labels.shape != image.shape[:2]:
                raise DataError(
                    f"{path} is {labels.shape[1]}x{labels.shape[0]} but its image is "
                    f"{image.shape[1]}x{image.shape[0]}"
                )
            bad = np.setdiff1d(np.unique(labels), [*range(self.num_classes + 1), IGNORE_INDEX])
            if bad.size:
                raise DataError(f"{path}: label values {bad.tolist()} are not classes 0..{self.num_classes}")
            record = record.replace(sem_seg=labels)
        return record

    def summary(self, index: int) -> ImageSummary:
        if self.objects is None:  # label maps: read them
            return super().summary(index)
        objects = self.objects[index]
        return ImageSummary(objects.height, objects.width, objects.labels[~objects.difficult])

    def coco_ground_truth(self) -> dict[str, Any]:
        """Detection ground truth as a COCO dict: ``difficult`` objects are ``iscrowd``."""
        if self.objects is None:
            raise DataError(f"{self.root}: a segmentation split has no detection ground truth")
        images, annotations = [], []
        for index, objects in enumerate(self.objects):
            images.append({"id": index + 1, "file_name": f"{self.ids[index]}.jpg",
                           "height": objects.height, "width": objects.width})
            annotations.extend(
                coco_annotations(index + 1, objects.boxes, objects.labels, objects.difficult,
                                 self.category_ids, len(annotations))
            )
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
        return {"images": images, "annotations": annotations, "categories": categories}
