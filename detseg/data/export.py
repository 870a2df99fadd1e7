"""Write a data set to disk in COCO or Pascal VOC layout.

COCO::

    OUT/<split>/<image id:06d>.jpg
    OUT/annotations/instances_<split>.json      (RLE masks, area = mask pixels)

VOC::

    OUT/JPEGImages/<split>_<id:06d>.jpg   OUT/Annotations/<split>_<id:06d>.xml
    OUT/SegmentationClass/<...>.png (palette)   OUT/SegmentationObject/<...>.png
    OUT/ImageSets/{Main,Segmentation}/<split>.txt   OUT/class_names.txt
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from detseg.data.base import DetectionDataset, coco_annotations
from detseg.data.io import write_label_map
from detseg.data.voc import CLASS_NAMES_FILE, voc_palette


def _write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"cannot write {path}")


def write_coco(dataset: DetectionDataset, out: str | Path, split: str, image_ext: str = ".jpg") -> Path:
    """Write images and ``annotations/instances_<split>.json``; returns the JSON path."""
    out = Path(out)
    images, annotations = [], []
    for index in tqdm(range(len(dataset)), desc=f"coco {split}", unit="img", leave=False):
        record = dataset.load(index)
        file_name = f"{record.image_id:06d}{image_ext}"
        _write_image(out / split / file_name, record.image)
        images.append({"id": record.image_id, "file_name": file_name,
                       "height": record.orig_size[0], "width": record.orig_size[1]})
        annotations.extend(
            coco_annotations(record.image_id, record.boxes, record.labels, record.ignore,
                             dataset.category_ids, len(annotations), record.masks)
        )
    categories = [{"id": cid, "name": name, "supercategory": "shape"}
                  for cid, name in zip(dataset.category_ids, dataset.class_names)]
    ann_file = out / "annotations" / f"instances_{split}.json"
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}
    ))
    return ann_file


def write_voc(dataset: DetectionDataset, out: str | Path, split: str) -> Path:
    """Write a VOC layout (boxes must be whole pixels); returns the split's list file."""
    out = Path(out)
    for folder in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject",
                   "ImageSets/Main", "ImageSets/Segmentation"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    (out / CLASS_NAMES_FILE).write_text("\n".join(dataset.class_names) + "\n")
    palette = voc_palette()
    ids = []
    for index in tqdm(range(len(dataset)), desc=f"voc {split}", unit="img", leave=False):
        record = dataset.load(index)
        stem = f"{split}_{record.image_id:06d}"
        ids.append(stem)
        _write_image(out / "JPEGImages" / f"{stem}.jpg", record.image)
        (out / "Annotations" / f"{stem}.xml").write_bytes(_voc_xml(stem, record, dataset.class_names))
        if record.sem_seg is not None:
            write_label_map(out / "SegmentationClass" / f"{stem}.png", record.sem_seg, palette)
        if record.masks is not None:
            objects = np.zeros(record.orig_size, np.uint8)
            for i, mask in enumerate(record.masks):
                objects[mask.astype(bool)] = i + 1
            write_label_map(out / "SegmentationObject" / f"{stem}.png", objects, palette)
    for list_dir in ("Main", "Segmentation"):
        (out / "ImageSets" / list_dir / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return out / "ImageSets" / "Main" / f"{split}.txt"


def _voc_xml(stem: str, record, class_names: list[str]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{stem}.jpg"
    size = ET.SubElement(root, "size")
    for key, value in (("width", record.orig_size[1]), ("height", record.orig_size[0]), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for box, label, difficult in zip(record.boxes, record.labels, record.ignore):
        if not np.allclose(box, np.round(box)):
            raise ValueError(f"VOC needs whole-pixel boxes, image {stem} has {box.tolist()}")
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = class_names[int(label)]
        ET.SubElement(obj, "difficult").text = str(int(difficult))
        bndbox = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        # Continuous [x1, x2) covers VOC's 1-based inclusive pixels x1+1 .. x2.
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, key).text = str(value)
    ET.indent(root)
    return ET.tostring(root)
