"""COCO instances JSON: the one reader and the one writer.

On disk a box is ``bbox: [x, y, width, height]`` in absolute pixels; it becomes ``xyxy``.
Category ids may be sparse: labels ``0..C-1`` follow increasing id, and
:attr:`LabeledSet.category_ids` maps back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from detseg.data.formats.entries import Annotation, ImageEntry, LabeledSet, put_image
from detseg.data.io import read_json
from detseg.data.problems import Problem
from detseg.data.validation import check_box
from detseg.errors import DataError


def load_coco_json(path: str | Path) -> dict[str, Any]:
    """Read a COCO instances file and check its structure: the three lists, categories
    with integer ids, images with an integer id, a file name and a positive size, and
    annotations that are objects. (Their ids, boxes and references are problems that
    :func:`read_coco` records.)

    Raises:
        DataError: naming the file and the first malformed entry.
    """
    data = read_json(path, "annotation file")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO instances object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing or invalid '{key}' list")
    for i, category in enumerate(data["categories"]):
        if not (isinstance(category, dict) and _is_int(category.get("id"))):
            raise DataError(f"{path}: categories[{i}] needs an integer 'id', got {_short(category)}")
    for i, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and _is_int(image.get("id")) and isinstance(image.get("file_name"), str)):
            raise DataError(f"{path}: images[{i}] needs an integer 'id' and a 'file_name', got {_short(image)}")
        width, height = image.get("width"), image.get("height")
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            raise DataError(f"{path}: image {image['id']} ({image['file_name']}): 'width' and 'height' must be "
                            f"positive integers, got {width!r} x {height!r}")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DataError(f"{path}: annotations[{i}] must be an object, got {_short(ann)}")
    return data


def read_coco(ann_file: str | Path, image_dir: str | Path, data: dict[str, Any] | None = None,
              require_masks: bool = False) -> LabeledSet:
    """Read a COCO instances file (or its ``data`` as :func:`load_coco_json` returned it).

    A malformed file raises :class:`DataError` (see :func:`load_coco_json`). Problems, each
    naming the annotation and its image's file name: duplicate image or annotation ids,
    annotations of an image that is not listed, unknown category ids, malformed or
    invalid boxes (:func:`~detseg.data.validation.check_box`), and with ``require_masks``
    annotations without a ``segmentation`` or with an RLE of another size than the image.
    Image files are not looked at (:func:`~detseg.data.formats.entries.select` does).
    """
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    data = load_coco_json(ann_file) if data is None else data
    path = str(ann_file)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    category_ids = [int(c["id"]) for c in categories]
    label_of = {cid: i for i, cid in enumerate(category_ids)}
    out = LabeledSet([str(c.get("name", c["id"])) for c in categories], category_ids=category_ids)
    by_id: dict[int, ImageEntry] = {}
    for info in data["images"]:
        image_id, name = info["id"], info["file_name"]
        if image_id in by_id:
            out.problems.append(Problem("error", "duplicate image id", path, f"image id {image_id} is listed for "
                                        f"{by_id[image_id].name} and {name}", image=name))
            continue
        by_id[image_id] = ImageEntry(image_dir / name, name, image_id, info["width"], info["height"])
        out.images.append(by_id[image_id])
    first_index: dict[Any, int] = {}  # annotation id -> its position in 'annotations'
    for i, ann in enumerate(data["annotations"]):
        ann_id, image_id = ann.get("id"), ann.get("image_id")
        entry = by_id.get(image_id) if _is_int(image_id) else None
        where = f"annotation {ann_id}" + (f" (image {entry.name})" if entry is not None else "")
        found: list[tuple[str, str, str]] = []  # (level, kind, detail) of this annotation
        if not (_is_int(ann_id) or isinstance(ann_id, str)):
            found.append(("error", "malformed entry", f"annotations[{i}] needs an 'id' (an integer), got {ann_id!r}"))
        elif ann_id in first_index:
            found.append(("error", "duplicate annotation id", f"annotation id {ann_id} is used twice: "
                          f"annotations[{first_index[ann_id]}] and annotations[{i}]"))
        else:
            first_index[ann_id] = i
        box = None
        if entry is None:
            found.append(("error", "unknown image id", f"refers to image id {image_id!r}, which is not in 'images'"))
        elif not _is_int(ann.get("category_id")) or ann["category_id"] not in label_of:
            found.append(("error", "class not in category list",
                          f"category_id {ann.get('category_id')!r} is not in 'categories' ({category_ids})"))
        elif not _is_bbox(ann.get("bbox")):
            found.append(("error", "malformed label",
                          f"'bbox' must be [x, y, width, height] numbers, got {ann.get('bbox')!r}"))
        else:
            x, y, w, h = (float(v) for v in ann["bbox"])
            box, issue = check_box(np.array([x, y, x + w, y + h]), entry.width, entry.height, f"image {image_id}")
            found += [issue] if issue is not None else []
            if require_masks:  # a bad mask is an error, but the box is still the object's
                found += _mask_problems(ann.get("segmentation"), entry)
        out.problems += [Problem(level, kind, path, detail, where, entry.name if entry else None)
                         for level, kind, detail in found]
        if box is not None:
            entry.annotations.append(Annotation(box, label_of[ann["category_id"]], bool(ann.get("iscrowd", 0)),
                                                ann.get("segmentation")))
    return out


def segmentation_size_problem(segmentation: Any, height: int, width: int) -> str | None:
    """What is wrong with an RLE ``segmentation`` of another size than its image, or None
    (polygons have no size)."""
    if isinstance(segmentation, dict) and list(segmentation.get("size", [])) != [height, width]:
        return (f"RLE mask size {segmentation.get('size')} (height, width) differs from the image's "
                f"[{height}, {width}]")
    return None


def _mask_problems(segmentation: Any, entry: ImageEntry) -> list[tuple[str, str, str]]:
    if not segmentation:
        return [("error", "missing mask", "no 'segmentation'; set with_masks: false to load boxes only")]
    size = segmentation_size_problem(segmentation, entry.height, entry.width)
    return [("error", "mask size mismatch", size)] if size else []


def coco_dict(labeled: LabeledSet) -> dict[str, Any]:
    """The set as a COCO instances dict: ``file_name`` is each image's file name,
    annotation ids count from 1, ``area`` is the annotation's or its box's."""
    category_ids = labeled.category_ids or list(range(1, len(labeled.class_names) + 1))
    images, annotations = [], []
    for entry in labeled.images:
        images.append({"id": entry.image_id, "file_name": entry.path.name, "height": entry.height,
                       "width": entry.width})
        for ann in entry.annotations:
            x1, y1, x2, y2 = (float(v) for v in ann.box)
            record = {"id": len(annotations) + 1, "image_id": entry.image_id,
                      "category_id": int(category_ids[ann.label]), "bbox": [x1, y1, x2 - x1, y2 - y1],
                      "area": (x2 - x1) * (y2 - y1) if ann.area is None else float(ann.area),
                      "iscrowd": int(ann.iscrowd)}
            if ann.segmentation is not None:
                record["segmentation"] = ann.segmentation
            annotations.append(record)
    categories = [{"id": int(cid), "name": name} for cid, name in zip(category_ids, labeled.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(labeled: LabeledSet, ann_file: str | Path, image_dir: str | Path) -> Path:
    """``ann_file`` (:func:`coco_dict`) and the images put in ``image_dir``; returns ``ann_file``."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    for entry in labeled.images:
        put_image(entry, image_dir)
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(coco_dict(labeled)))
    return ann_file


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bbox(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
