"""Pascal VOC layout, detection and segmentation: the one reader of each and the one writer.

Layout (``root`` is e.g. ``VOCdevkit/VOC2012``)::

    JPEGImages/<id>.jpg   Annotations/<id>.xml   SegmentationClass/<id>.png   SegmentationObject/<id>.png
    ImageSets/Main/<split>.txt   ImageSets/Segmentation/<split>.txt   class_names.txt (optional)

VOC boxes are 1-based inclusive pixel indices; they become continuous xyxy as
``(xmin - 1, ymin - 1, xmax, ymax)``, so the IoU of converted boxes equals the VOC
devkit's ``+1`` IoU on the raw numbers. ``SegmentationClass`` PNGs hold 0 = background,
``label + 1`` per class and 255 = void; ``SegmentationObject`` PNGs the object's index + 1.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np

from detseg.data.formats.entries import (
    Annotation,
    ImageEntry,
    LabeledSet,
    number,
    put_image,
    put_label_map,
)
from detseg.data.io import write_label_map
from detseg.data.problems import Problem
from detseg.data.validation import check_box
from detseg.errors import DataError
from detseg.structures.masks import segmentation_to_mask

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]
CLASS_NAMES_FILE = "class_names.txt"
"""Optional file in ``root`` with one class name per line (for non-VOC classes)."""


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


def read_class_names(root: Path, class_names: list[str] | None) -> list[str]:
    """``class_names`` if given, else ``root/class_names.txt`` if present, else the 20 VOC classes."""
    if class_names is not None:
        return list(class_names)
    listed = Path(root) / CLASS_NAMES_FILE
    if listed.is_file():
        return [line.strip() for line in listed.read_text().splitlines() if line.strip()]
    return list(VOC_CLASSES)


def read_id_list(list_file: Path, root: Path) -> list[str]:
    """The image ids of a VOC split file (first word per line); a missing root or split
    file raises :class:`DataError` naming it (and the splits that are there)."""
    if not root.is_dir():
        raise DataError(f"VOC root folder not found: {root}" + (" (it is a file)" if root.exists() else ""))
    if not list_file.is_file():
        there = sorted(p.stem for p in list_file.parent.glob("*.txt")) if list_file.parent.is_dir() else []
        raise DataError(f"VOC split file not found: {list_file} (split '{list_file.stem}'; "
                        f"{'splits there: ' + ', '.join(there) if there else 'no split files there'})")
    return [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]


def _split_ids(root: Path, list_dir: str, split: str, problems: list[Problem]) -> list[str]:
    """The split's ids, each once; an id listed twice is a problem."""
    list_file = root / "ImageSets" / list_dir / f"{split}.txt"
    ids = read_id_list(list_file, root)
    problems += [Problem("error", "duplicate image id", str(list_file), f"'{stem}' is listed {count} times",
                         image=stem) for stem, count in Counter(ids).items() if count > 1]
    return list(dict.fromkeys(ids))


def read_voc(root: str | Path, split: str, class_names: list[str]) -> LabeledSet:
    """Detection: the ids of ``ImageSets/Main/<split>.txt``, their ``Annotations/<id>.xml``
    and ``JPEGImages/<id>.jpg``; ``difficult`` objects become ``iscrowd``. Image ids count
    from 1 in list order. Problems: ids listed twice, XML files that are missing or
    unreadable (the image is left out), unknown class names, malformed or invalid boxes."""
    root = Path(root)
    out = LabeledSet(list(class_names))
    for index, stem in enumerate(_split_ids(root, "Main", split, out.problems)):
        xml = root / "Annotations" / f"{stem}.xml"
        parsed = _read_xml(xml)
        if isinstance(parsed, str):
            out.problems.append(Problem("error", "unreadable annotation", str(xml), parsed, image=stem))
            continue
        tree, width, height = parsed
        entry = ImageEntry(root / "JPEGImages" / f"{stem}.jpg", stem, index + 1, width, height)
        for i, obj in enumerate(tree.iter("object")):
            annotation, issue = _read_object(obj, out.class_names, width, height)
            if issue is not None:
                level, kind, detail = issue
                out.problems.append(Problem(level, kind, str(xml), detail, f"object {i}", stem))
            if annotation is not None:
                entry.annotations.append(annotation)
        out.images.append(entry)
    return out


def _read_xml(xml: Path) -> tuple[ET.Element, int, int] | str:
    """The parsed file and its ``<size>`` (width, height), or what is wrong with it."""
    if not xml.is_file():
        return "annotation file not found"
    try:
        tree = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        return f"invalid XML ({exc})"
    try:
        return tree, int(tree.findtext("size/width")), int(tree.findtext("size/height"))
    except (TypeError, ValueError):
        return "missing or invalid <size>"


def _read_object(obj: ET.Element, class_names: list[str], width: int,
                 height: int) -> tuple[Annotation | None, tuple[str, str, str] | None]:
    """One ``<object>``: its annotation (None when rejected) and its ``(level, kind,
    detail)`` problem (None when there is none)."""
    name = (obj.findtext("name") or "").strip()
    if name not in class_names:
        return None, ("error", "class not in category list", f"unknown class '{name}' (classes: {class_names})")
    try:
        xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (TypeError, ValueError):
        return None, ("error", "malformed label", f"missing or invalid <bndbox> ('{name}')")
    box, issue = check_box(np.array([xmin - 1, ymin - 1, xmax, ymax]), width, height)
    difficult = (obj.findtext("difficult") or "0").strip() == "1"
    return (None if box is None else Annotation(box, class_names.index(name), difficult)), issue


def read_voc_segmentation(root: str | Path, split: str, class_names: list[str]) -> LabeledSet:
    """Segmentation: the ids of ``ImageSets/Segmentation/<split>.txt`` with
    ``JPEGImages/<id>.jpg`` and their ``SegmentationClass/<id>.png`` (``label_map``; sizes
    are not read). Image ids count from 1 in list order. Problems: ids listed twice,
    label maps that are missing (the image is left out)."""
    root = Path(root)
    out = LabeledSet(list(class_names))
    for index, stem in enumerate(_split_ids(root, "Segmentation", split, out.problems)):
        label_map = root / "SegmentationClass" / f"{stem}.png"
        if not label_map.is_file():
            out.problems.append(Problem("error", "missing mask", str(label_map), f"no label map for {stem}",
                                        image=stem))
            continue
        out.images.append(ImageEntry(root / "JPEGImages" / f"{stem}.jpg", stem, index + 1, label_map=label_map))
    return out


def write_voc(labeled: LabeledSet, root: str | Path, split: str) -> Path:
    """Write the set in VOC layout: images, XMLs, ``ImageSets/Main/<split>.txt`` and
    ``class_names.txt``; for entries with a label map also ``SegmentationClass`` (palette
    PNG), ``SegmentationObject`` (when their objects have masks) and
    ``ImageSets/Segmentation/<split>.txt``. Whole-pixel boxes are written as integers,
    others keep their decimals. The file name stem is the entry's name's. Returns the
    ``Main`` list file."""
    root = Path(root)
    palette = voc_palette()
    stems, segmented = [], []
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    for entry in labeled.images:
        stem = Path(entry.name).stem if entry.name else f"{entry.image_id:06d}"
        stems.append(stem)
        file_name = put_image(entry, root / "JPEGImages", f"{stem}{entry.path.suffix}")
        (root / "Annotations" / f"{stem}.xml").write_bytes(_voc_xml(entry, file_name, labeled.class_names))
        if put_label_map(entry, root / "SegmentationClass" / f"{stem}.png", palette):
            segmented.append(stem)
            masks = [a.segmentation for a in entry.annotations if a.segmentation is not None]
            if masks:
                objects = np.zeros((entry.height, entry.width), np.uint8)
                for i, segmentation in enumerate(masks):
                    objects[segmentation_to_mask(segmentation, entry.height, entry.width)] = i + 1
                (root / "SegmentationObject").mkdir(exist_ok=True)
                write_label_map(root / "SegmentationObject" / f"{stem}.png", objects, palette)
    for list_dir, listed in (("Main", stems), ("Segmentation", segmented)):
        if listed or list_dir == "Main":
            (root / "ImageSets" / list_dir).mkdir(parents=True, exist_ok=True)
            (root / "ImageSets" / list_dir / f"{split}.txt").write_text("".join(f"{s}\n" for s in listed))
    (root / CLASS_NAMES_FILE).write_text("".join(f"{n}\n" for n in labeled.class_names))
    return root / "ImageSets" / "Main" / f"{split}.txt"


def _voc_xml(entry: ImageEntry, file_name: str, class_names: list[str]) -> bytes:
    xml = ET.Element("annotation")
    ET.SubElement(xml, "filename").text = file_name
    size = ET.SubElement(xml, "size")
    for key, value in (("width", entry.width), ("height", entry.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for ann in entry.annotations:
        obj = ET.SubElement(xml, "object")
        ET.SubElement(obj, "name").text = class_names[ann.label]
        ET.SubElement(obj, "difficult").text = str(int(ann.iscrowd))
        bndbox = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (float(v) for v in ann.box)
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, key).text = number(value)
    ET.indent(xml)
    return ET.tostring(xml)
