"""Data formats, each with one reader and one writer, through one neutral form.

=================  =====================================  ==============================
format             reader                                 writer
=================  =====================================  ==============================
COCO instances     :func:`read_coco`                      :func:`write_coco`
VOC detection      :func:`read_voc`                       :func:`write_voc`
VOC segmentation   :func:`read_voc_segmentation`          :func:`write_voc` (label maps)
YOLO txt           :func:`read_yolo`                      :func:`write_yolo`
image+mask folder  :func:`read_mask_folder`               :func:`write_mask_folder`
=================  =====================================  ==============================

Readers return a :class:`LabeledSet`: the images, with boxes ``xyxy`` in absolute pixels,
and every :class:`~detseg.data.problems.Problem` met instead of stopping at the first. Data
sets refuse on the errors, the data doctor reports them, ``tools/convert.py`` converts
through the neutral form.
"""

from __future__ import annotations

from pathlib import Path

from detseg.data.formats.coco import coco_dict, load_coco_json, read_coco, write_coco
from detseg.data.formats.entries import (
    IMAGE_SUFFIXES,
    Annotation,
    ImageEntry,
    LabeledSet,
    image_size,
    select,
)
from detseg.data.formats.folders import read_mask_folder, write_mask_folder
from detseg.data.formats.voc import read_class_names, read_voc, read_voc_segmentation, write_voc
from detseg.data.formats.yolo import read_yolo, write_yolo
from detseg.data.problems import Problem, refuse_errors
from detseg.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "Annotation",
    "ImageEntry",
    "LabeledSet",
    "Problem",
    "coco_dict",
    "image_size",
    "load_coco_json",
    "read_coco",
    "read_format",
    "read_mask_folder",
    "read_voc",
    "read_voc_segmentation",
    "read_yolo",
    "refuse_errors",
    "select",
    "write_coco",
    "write_mask_folder",
    "write_voc",
    "write_yolo",
]


def read_format(kind: str, source: str | Path, split: str, class_names: list[str] | None = None,
                image_dir: str | Path | None = None) -> LabeledSet:
    """Read a box format for conversion: ``coco`` (source = instances JSON, ``image_dir``),
    ``voc`` (source = root; class names from ``class_names`` / ``root/class_names.txt`` /
    the 20 VOC classes) or ``yolo`` (source = data YAML)."""
    if kind == "coco":
        if image_dir is None:
            raise DataError(f"{source}: reading COCO needs the image folder (--images)")
        return read_coco(source, image_dir)
    if kind == "voc":
        return read_voc(source, split, read_class_names(Path(source), class_names))
    if kind == "yolo":
        return read_yolo(source, split)
    raise DataError(f"unknown format '{kind}' (coco, voc, yolo)")
