"""The data doctor: read a configured data set's files and report every problem at once.

It reads with the readers the data sets use (:mod:`detseg.data.formats`) and reports what
they record, which is what a data set refuses to be built on: so the doctor and the data
set agree. It adds what only reading the image and mask files finds: unreadable images,
image sizes that disagree with the annotations, label maps of another size or with values
that are not classes, masks that disagree with their box.

Per split: the number of images, objects per class, empty images, and findings (each a
:class:`~detseg.data.problems.Problem`). Errors stop training (unless the images are listed
in the data set's ``skip_files``); warnings are reported and training goes on.

``level="brief"`` (run by ``tools/train.py`` at start) checks every annotation, that every
image file exists, and the headers of up to :data:`BRIEF_IMAGES` images; ``"full"`` (``tools/check_data.py``) decodes
every image and mask.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from detseg.config import to_plain
from detseg.data.formats.coco import read_coco, segmentation_size_problem
from detseg.data.formats.entries import ImageEntry, LabeledSet, image_size, select, size_problem
from detseg.data.formats.folders import (
    label_map_size_problem,
    label_values_problem,
    read_mask_folder,
)
from detseg.data.formats.voc import read_class_names, read_voc, read_voc_segmentation
from detseg.data.formats.yolo import read_yolo
from detseg.data.io import read_image, read_label_map
from detseg.data.problems import Problem
from detseg.data.validation import read_skip_list
from detseg.errors import DataError
from detseg.ops.boxes import box_iou
from detseg.structures.masks import segmentation_to_mask

BRIEF_IMAGES = 1000
MASK_BOX_MIN_IOU = 0.5

Level = Literal["brief", "full"]


@dataclass
class SplitReport:
    split: str
    dataset: str
    images: int = 0
    objects_per_class: dict[str, int] = field(default_factory=dict)
    empty_images: int = 0
    findings: list[Problem] = field(default_factory=list)
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    checked: bool = True  # False: a generated data set, nothing on disk

    def errors(self) -> list[Problem]:
        return [f for f in self.findings if f.level == "error"]

    def images_with_errors(self) -> list[str]:
        return sorted({f.image for f in self.errors() if f.image is not None})

    def format(self, shown_per_kind: int = 5) -> str:
        if not self.checked:
            return f"[{self.split}] {self.dataset}: generated on the fly, no files to check"
        lines = [f"[{self.split}] {self.dataset}: {self.images} images, {self.empty_images} without objects"
                 + (f", {self.skipped} skipped by skip_files" if self.skipped else "")]
        if self.objects_per_class:
            lines.append("  objects per class: " + ", ".join(f"{k} {v}" for k, v in self.objects_per_class.items()))
        lines += [f"  note: {note}" for note in self.notes]
        kinds = Counter((f.level, f.kind) for f in self.findings)
        for (level, kind), count in sorted(kinds.items()):
            lines.append(f"  {level}: {kind}: {count}")
            shown = [f for f in self.findings if (f.level, f.kind) == (level, kind)][:shown_per_kind]
            lines += [f"    {f.text}" for f in shown]
            if count > shown_per_kind:
                lines.append(f"    ... and {count - shown_per_kind} more")
        if not self.findings:
            lines.append("  no problems found")
        return "\n".join(lines)


def check_dataset(node: dict[str, Any], split: str, level: Level = "full") -> SplitReport:
    """Check the data set of one split from its config node (``{name: coco, ann_file: ...}``),
    reading its files as the data set named ``name`` does with those arguments."""
    name = node.get("name")
    params = {k: v for k, v in node.items() if k != "name"}
    skip = read_skip_list(params.get("skip_files"))
    report = SplitReport(split, str(name))
    if name == "coco":
        with_masks = params.get("with_masks", True)
        labeled = read_coco(params["ann_file"], params["image_dir"], require_masks=with_masks)
        _check_boxes(labeled, report, skip, level, masks=with_masks)
    elif name == "yolo_txt":
        _check_boxes(read_yolo(params["data_yaml"], params.get("split", "train")), report, skip, level, masks=False)
    elif name == "voc":
        root = Path(params["root"])
        class_names = read_class_names(root, params.get("class_names"))
        if params.get("task", "detection") == "detection":
            _check_boxes(read_voc(root, params.get("split", "train"), class_names), report, skip, level, masks=False)
        else:
            labeled = read_voc_segmentation(root, params.get("split", "train"), class_names)
            _check_label_maps(labeled, len(class_names) + 1, 255, report, skip, level)
    elif name == "seg_folder":
        try:
            labeled = read_mask_folder(params["image_dir"], params["mask_dir"], params["class_names"])
        except DataError as exc:  # a missing folder: name the config key
            raise DataError(f"data.{split}.dataset.{exc}") from None
        _check_label_maps(labeled, len(params["class_names"]), params.get("ignore_index", 255), report, skip, level)
    else:
        report.checked = False
    if report.checked and report.images == 0:
        source = next((str(params[k]) for k in ("ann_file", "data_yaml", "root", "image_dir") if k in params), str(name))
        detail = (f"all {report.skipped} images are in skip_files" if report.skipped else
                  f"it lists no images (data.{split}" + (f", split '{params['split']}'" if "split" in params else "")
                  + ")")
        report.findings.append(Problem("error", "no images", source, detail))
    return report


def check_labeled_set(labeled: LabeledSet, split: str, dataset: str = "", level: Level = "brief",
                      masks: bool = False) -> SplitReport:
    """The report of an already read set: its reader's problems plus those of its image
    files (missing, unreadable, of another size) and, with ``masks``, of its masks."""
    report = SplitReport(split, dataset)
    _check_boxes(labeled, report, set(), level, masks)
    return report


def _check_boxes(labeled: LabeledSet, report: SplitReport, skip: set[str], level: Level, masks: bool) -> None:
    entries, problems = select(labeled, skip)
    report.findings += problems
    report.skipped = len(labeled.images) - len(entries)
    report.images = len(entries)
    report.empty_images = sum(not e.annotations for e in entries)
    report.objects_per_class = LabeledSet(labeled.class_names, entries).objects_per_class()
    for entry in _sample(entries, level, report):
        if not entry.path.is_file():  # select() reported it
            continue
        size = _readable_size(entry.path, level)
        if size is None:
            report.findings.append(Problem("error", "unreadable image", str(entry.path),
                                           "cannot be decoded (corrupt or not an image)", image=entry.name))
        elif (problem := size_problem(entry, *size)) is not None:
            report.findings.append(problem)
        elif masks and level == "full":
            _check_instance_masks(entry, report)


def _check_instance_masks(entry: ImageEntry, report: SplitReport) -> None:
    for i, ann in enumerate(entry.annotations):
        if not ann.segmentation or segmentation_size_problem(ann.segmentation, entry.height, entry.width):
            continue  # the reader reported it
        iou = _mask_box_iou(segmentation_to_mask(ann.segmentation, entry.height, entry.width), ann.box)
        if iou < MASK_BOX_MIN_IOU:
            report.findings.append(Problem("warning", "mask disagrees with box", str(entry.path),
                                           f"the mask's bounding box overlaps the box with IoU {iou:.2f}",
                                           f"object {i}", entry.name))


def _check_label_maps(labeled: LabeledSet, num_classes: int, ignore_index: int, report: SplitReport,
                      skip: set[str], level: Level) -> None:
    entries, problems = select(labeled, skip)
    report.findings += problems
    report.skipped, report.images = len(labeled.images) - len(entries), len(entries)
    counts: Counter[int] = Counter()
    for entry in _sample(entries, level, report):
        if not entry.path.is_file():  # select() reported it
            continue
        image, mask = _readable_size(entry.path, level), _readable_size(entry.label_map, level, label_map=True)
        if image is None or mask is None:
            bad = entry.path if image is None else entry.label_map
            report.findings.append(Problem("error", "unreadable image", str(bad), "cannot be decoded", image=entry.name))
        elif (problem := label_map_size_problem(entry, mask, image)) is not None:
            report.findings.append(problem)
        elif level == "full":
            values = np.unique(read_label_map(entry.label_map))
            counts.update(int(v) for v in values)
            if (problem := label_values_problem(entry, values, num_classes, ignore_index)) is not None:
                report.findings.append(problem)
    if counts:
        report.objects_per_class = {f"value {v}": n for v, n in sorted(counts.items())}
        report.notes.append("objects per class counts the label maps each value appears in")


def _sample(items: list, level: Level, report: SplitReport) -> list:
    if level == "full" or len(items) <= BRIEF_IMAGES:
        return items
    report.notes.append(f"brief check: image files of {BRIEF_IMAGES} of {len(items)} images read "
                        f"(tools/check_data.py reads all)")
    step = len(items) / BRIEF_IMAGES
    return [items[int(i * step)] for i in range(BRIEF_IMAGES)]


def _readable_size(path: Path, level: Level, label_map: bool = False) -> tuple[int, int] | None:
    """``(width, height)``: from the header (brief) or by decoding the whole file (full)."""
    if level == "brief":
        return image_size(path)
    try:
        pixels = read_label_map(path) if label_map else read_image(path)
    except DataError:
        return None
    return pixels.shape[1], pixels.shape[0]


def _mask_box_iou(mask: np.ndarray, box: np.ndarray) -> float:
    """IoU of the bounding box of ``mask`` (``bool[H, W]``) with ``box`` (xyxy absolute
    pixels); 0 for an empty mask."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return 0.0
    mask_box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float64)
    return float(box_iou(mask_box, torch.as_tensor(box, dtype=torch.float64).reshape(1, 4))[0, 0])


def check_config_data(cfg: Any, splits: tuple[str, ...] = ("train", "val"), level: Level = "full") -> list[SplitReport]:
    """Reports for the config's ``data.<split>`` data sets (resolved, after overrides)."""
    data = to_plain(cfg.data)
    return [check_dataset(data[split]["dataset"], split, level) for split in splits if data.get(split)]
