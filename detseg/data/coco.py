"""COCO instances JSON: boxes, polygon and RLE masks, crowd regions, sparse category ids."""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from detseg.data.base import DetectionDataset, ImageSummary, Transform
from detseg.data.io import read_image, read_json
from detseg.data.record import ImageRecord
from detseg.data.validation import BoxChecker, check_files_exist, read_skip_list
from detseg.errors import DataError
from detseg.registry import DATASETS
from detseg.structures.masks import segmentation_to_mask


def load_coco_json(path: str | Path) -> dict[str, Any]:
    """Read a COCO instances file and check its structure: the three lists, categories
    with integer ids, images with an integer id, a file name and a positive size, and
    annotations that are objects. (Their ids, boxes and references are checked by the
    data set and by :func:`detseg.data.formats.read_coco`.)

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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@DATASETS.register("coco")
class CocoDataset(DetectionDataset):
    """A COCO-format detection / instance segmentation set.

    Category ids (sparse, e.g. 1..90) map to contiguous labels ``0..C-1`` in increasing id
    order; ``category_ids[label]`` maps back. ``iscrowd`` annotations become ignore
    regions (``DetSample.gt_ignore``). Images without annotations are kept.

    Args:
        ann_file: the instances JSON.
        image_dir: folder that ``file_name`` entries are relative to.
        with_masks: decode ``segmentation`` into instance masks.
        skip_files: ``file_name`` entries to leave out (with their annotations), or a
            file listing them (``tools/check_data.py --skip-lists`` writes it).
        transforms: applied to each record.
    """

    def __init__(
        self,
        ann_file: str,
        image_dir: str,
        with_masks: bool = True,
        skip_files: str | list[str] | None = None,
        transforms: Transform | None = None,
    ) -> None:
        super().__init__(transforms)
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.with_masks = with_masks
        self.data = load_coco_json(self.ann_file)
        categories = sorted(self.data["categories"], key=lambda c: c["id"])
        self.category_ids = [int(c["id"]) for c in categories]
        self.class_names = [str(c.get("name", c["id"])) for c in categories]
        self._label_of = {cid: i for i, cid in enumerate(self.category_ids)}
        skip = read_skip_list(skip_files)
        kept_ids = {im["id"] for im in self.data["images"] if im["file_name"] not in skip}
        skipped_ids = {im["id"] for im in self.data["images"]} - kept_ids
        self.data["images"] = [im for im in self.data["images"] if im["file_name"] not in skip]
        self.images = sorted(self.data["images"], key=lambda im: im["id"])
        self.data["annotations"] = [a for a in self.data["annotations"] if a.get("image_id") not in skipped_ids]
        self._annotations = self._index_annotations()
        check_files_exist([self.image_dir / im["file_name"] for im in self.images], str(self.ann_file))

    def _index_annotations(self) -> dict[int, list[dict[str, Any]]]:
        images = {im["id"]: im for im in self.images}
        if len(images) != len(self.images):
            raise DataError(f"{self.ann_file}: duplicate image ids")
        checker = BoxChecker(str(self.ann_file))
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for ann in self.data["annotations"]:
            where = f"annotation {ann.get('id', '?')}"
            image = images.get(ann.get("image_id"))
            if image is None:
                raise DataError(f"{self.ann_file}: {where}: unknown image_id {ann.get('image_id')!r}")
            where += f" (image {image['file_name']})"
            if ann.get("category_id") not in self._label_of:
                raise DataError(
                    f"{self.ann_file}: {where}: category_id {ann.get('category_id')!r} is not in "
                    f"'categories' ({self.category_ids})"
                )
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
                raise DataError(f"{self.ann_file}: {where}: 'bbox' must be [x, y, width, height] numbers, got {bbox!r}")
            x, y, w, h = (float(v) for v in bbox)
            if w < 0 or h < 0:
                raise DataError(
                    f"{self.ann_file}: {where}: negative width or height in bbox {bbox}"
                )
            if self.with_masks and not ann.get("segmentation"):
                raise DataError(
                    f"{self.ann_file}: {where}: no 'segmentation'; set with_masks: false to "
                    f"load boxes only"
                )
            box = checker.check(np.array([x, y, x + w, y + h]), image["height"], image["width"], where)
            by_image[image["id"]].append({**ann, "_box": box})
        checker.report()
        return by_image

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> ImageRecord:
        info = self.images[index]
        path = self.image_dir / info["file_name"]
        image = read_image(path)
        height, width = image.shape[:2]
        if (height, width) != (info["height"], info["width"]):
            raise DataError(
                f"{self.ann_file}: image {info['id']} ({path}) is {width}x{height} but the "
                f"annotation file says {info['width']}x{info['height']}"
            )
        anns = self._annotations.get(info["id"], [])
        masks = None
        if self.with_masks:
            masks = np.zeros((len(anns), height, width), np.uint8)
            for i, ann in enumerate(anns):
                segmentation = ann["segmentation"]
                if isinstance(segmentation, dict) and list(segmentation.get("size", [])) != [height, width]:
                    raise DataError(
                        f"{self.ann_file}: annotation {ann.get('id')!r} (image {info['id']}): RLE mask size "
                        f"{segmentation.get('size')} (height, width) differs from the image's [{height}, {width}]"
                    )
                masks[i] = segmentation_to_mask(segmentation, height, width)
        return ImageRecord(
            image=image,
            image_id=int(info["id"]),
            orig_size=(height, width),
            boxes=np.array([a["_box"] for a in anns], np.float32).reshape(-1, 4),
            labels=np.array([self._label_of[a["category_id"]] for a in anns], np.int64),
            ignore=np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
            masks=masks,
        )

    def summary(self, index: int) -> ImageSummary:
        info = self.images[index]
        labels = [self._label_of[a["category_id"]] for a in self._annotations.get(info["id"], [])
                  if not a.get("iscrowd", 0)]
        return ImageSummary(int(info["height"]), int(info["width"]), np.array(labels, np.int64))

    def coco_ground_truth(self) -> dict[str, Any]:
        """The annotation file as read, so evaluation sees exactly what pycocotools would."""
        return copy.deepcopy(
            {k: self.data[k] for k in ("images", "annotations", "categories")}
        )
