"""The data doctor: read a configured data set's files and report every problem at once.

Per split: the number of images, objects per class, empty images, and findings: unreadable
or missing images, image sizes that disagree with the annotations, boxes outside the image
or without area, duplicate image ids, class ids not in the category list, masks whose size
differs from the image's or that disagree with their box, label-map values that are not
classes. Errors stop training (unless the images are listed in the data set's
``skip_files``); warnings are reported and training goes on.

``level="brief"`` (run by ``tools/train.py`` at start) checks every annotation and the
headers of up to :data:`BRIEF_IMAGES` images; ``"full"`` (``tools/check_data.py``) decodes
every image and mask.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from detseg.config import to_plain
from detseg.data.formats import (
    IMAGE_SUFFIXES,
    Finding,
    LabeledSet,
    image_size,
    read_coco,
    read_id_list,
    read_voc,
    read_yolo,
)
from detseg.data.io import read_image, read_label_map
from detseg.data.validation import read_skip_list
from detseg.data.voc import read_class_names
from detseg.errors import DataError
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
    findings: list[Finding] = field(default_factory=list)
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    checked: bool = True  # False: a generated data set, nothing on disk

    def errors(self) -> list[Finding]:
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
            lines += [f"    {f.file}: {f.detail}" for f in shown]
            if count > shown_per_kind:
                lines.append(f"    ... and {count - shown_per_kind} more")
        if not self.findings:
            lines.append("  no problems found")
        return "\n".join(lines)


def check_dataset(node: dict[str, Any], split: str, level: Level = "full") -> SplitReport:
    """Check the data set of one split from its config node (``{name: coco, ann_file: ...}``)."""
    name = node.get("name")
    params = {k: v for k, v in node.items() if k != "name"}
    skip = read_skip_list(params.get("skip_files"))
    report = SplitReport(split, str(name))
    if name == "coco":
        labeled = read_coco(params["ann_file"], params["image_dir"])
        _check_labeled(labeled, report, skip, level, masks=params.get("with_masks", True))
    elif name == "voc" and params.get("task", "detection") == "detection":
        root = Path(params["root"])
        labeled = read_voc(root, params.get("split", "train"), read_class_names(root, params.get("class_names")))
        _check_labeled(labeled, report, skip, level, masks=False)
    elif name == "yolo_txt":
        _check_labeled(read_yolo(params["data_yaml"], params.get("split", "train")), report, skip, level, masks=False)
    elif name == "voc":
        root = Path(params["root"])
        list_file = root / "ImageSets" / "Segmentation" / f"{params.get('split', 'train')}.txt"
        ids = read_id_list(list_file, root)
        pairs = [(root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png", i) for i in ids]
        _check_label_maps(pairs, len(read_class_names(root, params.get("class_names"))) + 1, 255, report, skip, level)
    elif name == "seg_folder":
        image_dir, mask_dir = Path(params["image_dir"]), Path(params["mask_dir"])
        for key, folder in (("image_dir", image_dir), ("mask_dir", mask_dir)):
            if not folder.is_dir():
                raise DataError(f"data.{split}.dataset.{key}: folder not found: {folder}")
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        pairs = [(p, mask_dir / f"{p.stem}.png", p.name) for p in images]
        _check_label_maps(pairs, len(params["class_names"]), params.get("ignore_index", 255), report, skip, level)
    else:
        report.checked = False
    if report.checked and report.images == 0:
        source = next((str(params[k]) for k in ("ann_file", "data_yaml", "root", "image_dir") if k in params), str(name))
        detail = (f"all {report.skipped} images are in skip_files" if report.skipped else
                  f"it lists no images (data.{split}" + (f", split '{params['split']}'" if "split" in params else "")
                  + ")")
        report.findings.append(Finding("error", "no images", source, detail))
    return report


def check_labeled_set(labeled: LabeledSet, split: str, dataset: str = "", level: Level = "brief",
                      masks: bool = False) -> SplitReport:
    """The report of an already read set: its reader's findings plus those of its image
    files (missing, unreadable, of another size) and, with ``masks``, of its masks."""
    report = SplitReport(split, dataset)
    _check_labeled(labeled, report, set(), level, masks)
    return report


def _check_labeled(labeled: LabeledSet, report: SplitReport, skip: set[str], level: Level, masks: bool) -> None:
    report.findings += [f for f in labeled.findings if f.image not in skip]
    entries = [e for e in labeled.images if e.name not in skip]
    report.skipped = len(labeled.images) - len(entries)
    report.images = len(entries)
    report.empty_images = sum(not e.annotations for e in entries)
    report.objects_per_class = LabeledSet(labeled.class_names, entries).objects_per_class()
    for entry in _sample(entries, level, report):
        where = str(entry.path)
        if not entry.path.is_file():
            report.findings.append(Finding("error", "missing image", where, "file not found", entry.name))
            continue
        size = _readable_size(entry.path, level)
        if size is None:
            report.findings.append(Finding("error", "unreadable image", where, "cannot be decoded (corrupt or not "
                                           "an image)", entry.name))
            continue
        if size != (entry.width, entry.height):
            report.findings.append(Finding("error", "image size mismatch", where,
                                           f"the file is {size[0]}x{size[1]}, the annotation says "
                                           f"{entry.width}x{entry.height}", entry.name))
            continue
        if masks and level == "full":
            _check_instance_masks(entry, report)


def _check_instance_masks(entry, report: SplitReport) -> None:
    for i, ann in enumerate(entry.annotations):
        segmentation = ann.segmentation
        if not segmentation:
            continue
        where = f"{entry.name} (object {i})"
        if isinstance(segmentation, dict) and list(segmentation.get("size", [])) != [entry.height, entry.width]:
            report.findings.append(Finding("error", "mask size mismatch", where,
                                           f"RLE size {segmentation.get('size')} (height, width), image "
                                           f"[{entry.height}, {entry.width}]", entry.name))
            continue
        mask = segmentation_to_mask(segmentation, entry.height, entry.width)
        iou = _box_iou(_mask_box(mask), ann.box)
        if iou < MASK_BOX_MIN_IOU:
            report.findings.append(Finding("warning", "mask disagrees with box", where,
                                           f"the mask's bounding box overlaps the box with IoU {iou:.2f}",
                                           entry.name))


def _check_label_maps(pairs: list[tuple[Path, Path, str]], num_classes: int, ignore_index: int,
                      report: SplitReport, skip: set[str], level: Level) -> None:
    kept = [p for p in pairs if p[2] not in skip]
    report.skipped, report.images = len(pairs) - len(kept), len(kept)
    counts: Counter[int] = Counter()
    for image_path, mask_path, name in _sample(kept, level, report):
        if not mask_path.is_file():
            report.findings.append(Finding("error", "missing mask", str(mask_path), f"no label map for {name}", name))
            continue
        image, mask = _readable_size(image_path, level), _readable_size(mask_path, level, label_map=True)
        if image is None or mask is None:
            bad = image_path if image is None else mask_path
            report.findings.append(Finding("error", "unreadable image", str(bad), "cannot be decoded", name))
            continue
        if image != mask:
            report.findings.append(Finding("error", "mask size mismatch", str(mask_path),
                                           f"mask {mask[0]}x{mask[1]}, image {image[0]}x{image[1]}", name))
            continue
        if level == "full":
            values = np.unique(read_label_map(mask_path))
            counts.update(int(v) for v in values)
            bad_values = [int(v) for v in values if v >= num_classes and v != ignore_index]
            if bad_values:
                report.findings.append(Finding("error", "class not in category list", str(mask_path),
                                               f"label values {bad_values} are not classes 0..{num_classes - 1} "
                                               f"or ignore {ignore_index}", name))
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


def _mask_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return np.zeros(4)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def check_config_data(cfg: Any, splits: tuple[str, ...] = ("train", "val"), level: Level = "full") -> list[SplitReport]:
    """Reports for the config's ``data.<split>`` data sets (resolved, after overrides)."""
    data = to_plain(cfg.data)
    return [check_dataset(data[split]["dataset"], split, level) for split in splits if data.get(split)]
