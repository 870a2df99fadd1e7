"""Box annotation files in COCO, Pascal VOC and YOLO txt layout, read into one neutral form
(:class:`LabeledSet`) and written back out: the data doctor checks it, ``tools/convert.py``
converts through it.

Readers are tolerant: a problem becomes a :class:`Finding` naming the file, and the entry
with the problem is left out (or its box clipped, for a box reaching outside its image),
so one pass reports every problem instead of stopping at the first.

Boxes are ``xyxy`` in absolute pixels, continuous coordinates (a box over pixels 0..9 is
``[0, 10)``). On disk: COCO ``[x, y, w, h]``; VOC 1-based inclusive ``xmin..xmax``, i.e.
``xmin = x1 + 1, xmax = x2``; YOLO ``class cx cy w h`` divided by the image size.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from PIL import Image

from detseg.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Finding:
    """One problem: ``level`` error (training refuses) or warning (training goes on).
    ``image``: the image it concerns, as the data set lists it (what a skip list names)."""

    level: Literal["error", "warning"]
    kind: str
    file: str
    detail: str
    image: str | None = None

    def __str__(self) -> str:
        return f"{self.level}: {self.kind}: {self.file}: {self.detail}"


@dataclass
class Annotation:
    box: np.ndarray  # float64[4] xyxy absolute pixels
    label: int  # index into LabeledSet.class_names
    iscrowd: bool = False
    segmentation: Any = None  # COCO polygons or RLE, when the source has them


@dataclass
class ImageEntry:
    path: Path  # the image file
    name: str  # as the annotation lists it (COCO file_name, VOC id, YOLO path below images/)
    image_id: int
    width: int
    height: int
    annotations: list[Annotation] = field(default_factory=list)


@dataclass
class LabeledSet:
    class_names: list[str]
    images: list[ImageEntry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def objects_per_class(self) -> dict[str, int]:
        counts = Counter(a.label for im in self.images for a in im.annotations)
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def refuse_errors(self, source: str, skip: Collection[str] = (), hint: str = "") -> None:
        """:func:`refuse_errors` of this set's findings."""
        refuse_errors(self.findings, source, skip, hint)


def refuse_errors(findings: list[Finding], source: str, skip: Collection[str] = (), hint: str = "",
                  shown: int = 5) -> None:
    """Raise one :class:`DataError` (one line) naming ``source`` and the first ``shown``
    error findings (those of images in ``skip`` aside), ending with ``hint``; do nothing
    when there are none."""
    errors = [f for f in findings if f.level == "error" and (f.image is None or f.image not in skip)]
    if errors:
        listed = "; ".join(f"{f.kind}: {f.file}: {f.detail}" for f in errors[:shown])
        more = f"; and {len(errors) - shown} more" if len(errors) > shown else ""
        raise DataError(f"{source}: {len(errors)} error(s): {listed}{more}" + (f" ({hint})" if hint else ""))


def image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the file header, or None when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def check_box(box: np.ndarray, width: int, height: int, where: str, findings: list[Finding],
              image: str) -> np.ndarray | None:
    """The box clipped to the image; ``None`` (with an error finding) when it is degenerate,
    non-finite or wholly outside; a warning when clipping changed it."""
    if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        problem = ("non-finite coordinates" if not np.isfinite(box).all() else
                   "negative width or height" if box[2] < box[0] or box[3] < box[1] else "zero width or height")
        findings.append(Finding("error", "degenerate box", where,
                                f"box {box.round(3).tolist()} has no area ({problem})", image))
        return None
    clipped = np.clip(box, 0, [width, height, width, height])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        findings.append(Finding("error", "box outside image", where,
                                f"box {box.round(3).tolist()} lies outside the {width}x{height} image", image))
        return None
    if not np.allclose(clipped, box):
        findings.append(Finding("warning", "box outside image", where,
                                f"box {box.round(3).tolist()} reaches outside the {width}x{height} image "
                                f"(clipped when loaded)", image))
    return clipped


# -- COCO ------------------------------------------------------------------------------


def read_coco(ann_file: str | Path, image_dir: str | Path, data: dict[str, Any] | None = None) -> LabeledSet:
    """Read a COCO instances file (or its ``data`` as :func:`~detseg.data.coco.load_coco_json`
    returned it) tolerantly.

    A malformed file (entries without ids, sizes that are not positive) raises
    :class:`DataError`; findings: duplicate image or annotation ids, annotations of an
    image that is not listed, unknown category ids and boxes that are malformed,
    degenerate or (partly) outside their image. Each names the image's file name and id
    and the annotation id."""
    from detseg.data.coco import load_coco_json

    ann_file, image_dir = Path(ann_file), Path(image_dir)
    data = load_coco_json(ann_file) if data is None else data
    source = str(ann_file)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    out = LabeledSet([str(c.get("name", c["id"])) for c in categories])
    seen: dict[int, ImageEntry] = {}
    for info in data["images"]:
        image_id, name = info["id"], info["file_name"]
        if image_id in seen:
            out.findings.append(Finding("error", "duplicate image id", source,
                                        f"image id {image_id} is listed for {seen[image_id].name} and "
                                        f"{name}", name))
            continue
        entry = ImageEntry(image_dir / name, name, image_id, info["width"], info["height"])
        seen[image_id] = entry
        out.images.append(entry)
    annotation_ids: dict[Any, int] = {}  # id -> position in 'annotations'
    for i, ann in enumerate(data["annotations"]):
        ann_id = ann.get("id")
        entry = seen.get(ann.get("image_id")) if _is_int(ann.get("image_id")) else None
        where = (f"{entry.name} (image {entry.image_id}, annotation {ann_id})" if entry is not None
                 else f"annotation {ann_id}")
        if not (_is_int(ann_id) or isinstance(ann_id, str)):
            out.findings.append(Finding("error", "malformed entry", where,
                                        f"annotations[{i}] needs an 'id' (an integer), got {ann_id!r} (in {source})",
                                        entry.name if entry else None))
        elif ann_id in annotation_ids:
            out.findings.append(Finding("error", "duplicate annotation id", where,
                                        f"annotation id {ann_id} is used twice: annotations[{annotation_ids[ann_id]}]"
                                        f" and annotations[{i}] (in {source})", entry.name if entry else None))
        else:
            annotation_ids[ann_id] = i
        if entry is None:
            out.findings.append(Finding("error", "unknown image id", source,
                                        f"annotation {ann_id} refers to image id {ann.get('image_id')!r}, "
                                        f"which is not in 'images'"))
            continue
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in label_of:
            out.findings.append(Finding("error", "class not in category list", where,
                                        f"category_id {ann.get('category_id')!r} is not among "
                                        f"{sorted(label_of)}", entry.name))
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            out.findings.append(Finding("error", "malformed label", where,
                                        f"'bbox' must be [x, y, width, height] numbers, got {bbox!r}", entry.name))
            continue
        x, y, w, h = (float(v) for v in bbox)
        box = check_box(np.array([x, y, x + w, y + h]), entry.width, entry.height, where, out.findings, entry.name)
        if box is not None:
            entry.annotations.append(Annotation(box, label_of[ann["category_id"]], bool(ann.get("iscrowd", 0)),
                                                ann.get("segmentation")))
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_coco(labeled: LabeledSet, ann_file: str | Path, image_dir: str | Path) -> None:
    """``ann_file`` (categories 1..C in class order) and the images copied to ``image_dir``."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    images, annotations = [], []
    for entry in labeled.images:
        name = _copy_image(entry, image_dir)
        images.append({"id": entry.image_id, "file_name": name, "width": entry.width, "height": entry.height})
        for ann in entry.annotations:
            x1, y1, x2, y2 = (float(v) for v in ann.box)
            record = {"id": len(annotations) + 1, "image_id": entry.image_id, "category_id": ann.label + 1,
                      "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                      "iscrowd": int(ann.iscrowd)}
            if ann.segmentation is not None:
                record["segmentation"] = ann.segmentation
            annotations.append(record)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(labeled.class_names)]
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


# -- Pascal VOC --------------------------------------------------------------------------


def read_voc(root: str | Path, split: str, class_names: list[str]) -> LabeledSet:
    """``root/ImageSets/Main/<split>.txt`` ids, ``Annotations/<id>.xml``, ``JPEGImages/``."""
    root = Path(root)
    out = LabeledSet(list(class_names))
    list_file = root / "ImageSets" / "Main" / f"{split}.txt"
    ids = read_id_list(list_file, root)
    for stem, count in Counter(ids).items():
        if count > 1:
            out.findings.append(Finding("error", "duplicate image id", str(list_file), f"'{stem}' is listed {count} times"))
    for index, stem in enumerate(dict.fromkeys(ids)):
        xml = root / "Annotations" / f"{stem}.xml"
        try:
            tree = ET.parse(xml).getroot()
            width, height = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
        except (OSError, ET.ParseError, TypeError, ValueError) as exc:
            out.findings.append(Finding("error", "unreadable annotation", str(xml), str(exc) or "no <size>", stem))
            continue
        file_name = tree.findtext("filename") or f"{stem}.jpg"
        entry = ImageEntry(root / "JPEGImages" / file_name, stem, index, width, height)
        for i, obj in enumerate(tree.iter("object")):
            name = (obj.findtext("name") or "").strip()
            where = f"{xml.name} (object {i})"
            if name not in out.class_names:
                out.findings.append(Finding("error", "class not in category list", where,
                                            f"class '{name}' is not among {out.class_names}", stem))
                continue
            try:
                xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                out.findings.append(Finding("error", "malformed label", where, "missing or invalid <bndbox>", stem))
                continue
            box = check_box(np.array([xmin - 1, ymin - 1, xmax, ymax]), width, height, where, out.findings, stem)
            if box is not None:
                difficult = (obj.findtext("difficult") or "0").strip() == "1"
                entry.annotations.append(Annotation(box, out.class_names.index(name), difficult))
        out.images.append(entry)
    return out


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


def write_voc(labeled: LabeledSet, root: str | Path, split: str) -> None:
    """XMLs, ``JPEGImages/``, ``ImageSets/Main/<split>.txt`` and ``class_names.txt``.
    Whole-pixel boxes are written as integers, others keep their decimals."""
    root = Path(root)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    stems = []
    for entry in labeled.images:
        stem = Path(entry.name).stem if entry.name else f"{entry.image_id:06d}"
        stems.append(stem)
        file_name = _copy_image(entry, root / "JPEGImages", f"{stem}{entry.path.suffix}")
        xml = ET.Element("annotation")
        ET.SubElement(xml, "filename").text = file_name
        size = ET.SubElement(xml, "size")
        for key, value in (("width", entry.width), ("height", entry.height), ("depth", 3)):
            ET.SubElement(size, key).text = str(value)
        for ann in entry.annotations:
            obj = ET.SubElement(xml, "object")
            ET.SubElement(obj, "name").text = labeled.class_names[ann.label]
            ET.SubElement(obj, "difficult").text = str(int(ann.iscrowd))
            bndbox = ET.SubElement(obj, "bndbox")
            x1, y1, x2, y2 = (float(v) for v in ann.box)
            for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
                ET.SubElement(bndbox, key).text = _number(value)
        ET.indent(xml)
        (root / "Annotations" / f"{stem}.xml").write_bytes(ET.tostring(xml))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    (root / "class_names.txt").write_text("".join(f"{n}\n" for n in labeled.class_names))


# -- YOLO txt ----------------------------------------------------------------------------


def read_yolo_yaml(data_yaml: str | Path) -> tuple[Path, dict[str, Any], list[str]]:
    """The data root, the YAML, and the class names (``names`` as a list or ``{id: name}``)."""
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        what = "is a folder; give the data YAML inside it" if data_yaml.is_dir() else "not found"
        raise DataError(f"YOLO data YAML {what}: {data_yaml}")
    try:
        spec = yaml.safe_load(data_yaml.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"{data_yaml}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise DataError(f"{data_yaml}: expected a mapping with 'names' and split entries, got {type(spec).__name__}")
    names = spec.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise DataError(f"{data_yaml}: 'names' must list the class names")
    root = data_yaml.parent / str(spec.get("path") or ".")
    return root, spec, [str(n) for n in names]


def yolo_label_path(image: Path) -> Path:
    """``.../images/<sub>/x.jpg`` -> ``.../labels/<sub>/x.txt`` (the last ``images`` folder)."""
    parts = list(image.parts)
    last = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:last], "labels", *parts[last + 1:]).with_suffix(".txt")


def read_yolo(data_yaml: str | Path, split: str) -> LabeledSet:
    """Images in ``<path>/<split folder>`` (e.g. ``images/train``), labels in the matching
    ``labels/`` folder: one ``class cx cy w h`` line (normalised) per object; no label file
    means no objects."""
    root, spec, names = read_yolo_yaml(data_yaml)
    if split not in spec:
        raise DataError(f"{data_yaml}: no '{split}' entry (split '{split}'; it has "
                        f"{sorted(k for k in spec if k not in ('path', 'names'))})")
    image_dir = root / str(spec[split])
    if not image_dir.is_dir():
        raise DataError(f"{data_yaml}: image folder of split '{split}' not found: {image_dir}")
    out = LabeledSet(names)
    paths = sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for index, path in enumerate(paths):
        name = path.relative_to(image_dir).as_posix()
        size = image_size(path)
        if size is None:
            out.findings.append(Finding("error", "unreadable image", str(path), "not an image file PIL can open", name))
            continue
        entry = ImageEntry(path, name, index, *size)
        label_file = yolo_label_path(path)
        lines = label_file.read_text().splitlines() if label_file.is_file() else []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{label_file}:{number}"
            try:
                cls, cx, cy, w, h = line.split()[:5]
                label, (cx, cy, w, h) = int(cls), (float(v) for v in (cx, cy, w, h))
            except ValueError:
                out.findings.append(Finding("error", "malformed label", where, f"expected 'class cx cy w h', got {line!r}", name))
                continue
            if not 0 <= label < len(names):
                out.findings.append(Finding("error", "class not in category list", where,
                                            f"class {label} is not in 0..{len(names) - 1}", name))
                continue
            box = np.array([(cx - w / 2) * entry.width, (cy - h / 2) * entry.height,
                            (cx + w / 2) * entry.width, (cy + h / 2) * entry.height])
            box = check_box(box, entry.width, entry.height, where, out.findings, entry.name)
            if box is not None:
                entry.annotations.append(Annotation(box, label))
        out.images.append(entry)
    return out


def write_yolo(labeled: LabeledSet, root: str | Path, split: str) -> Path:
    """``root/images/<split>/``, ``root/labels/<split>/`` and ``root/data.yaml`` (split
    entries already there are kept); returns the YAML path."""
    root = Path(root)
    for entry in labeled.images:
        name = _copy_image(entry, root / "images" / split)
        label_file = root / "labels" / split / Path(name).with_suffix(".txt")
        label_file.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for ann in labeled_objects(entry):
            x1, y1, x2, y2 = (float(v) for v in ann.box)
            values = ((x1 + x2) / 2 / entry.width, (y1 + y2) / 2 / entry.height,
                      (x2 - x1) / entry.width, (y2 - y1) / entry.height)
            lines.append(f"{ann.label} " + " ".join(f"{v:.10g}" for v in values) + "\n")
        label_file.write_text("".join(lines))
    data_yaml = root / "data.yaml"
    spec = yaml.safe_load(data_yaml.read_text()) if data_yaml.is_file() else {}
    spec.update({"path": ".", split: f"images/{split}", "names": dict(enumerate(labeled.class_names))})
    data_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    return data_yaml


def labeled_objects(entry: ImageEntry) -> list[Annotation]:
    """YOLO txt has no crowd regions: they are left out."""
    return [a for a in entry.annotations if not a.iscrowd]


# -- shared ------------------------------------------------------------------------------


def read_format(kind: str, source: str | Path, split: str, class_names: list[str] | None = None,
                image_dir: str | Path | None = None) -> LabeledSet:
    """``coco`` (source = instances JSON, ``image_dir``), ``voc`` (source = root; class
    names from ``class_names`` / ``root/class_names.txt`` / the 20 VOC classes) or ``yolo``
    (source = data YAML)."""
    if kind == "coco":
        if image_dir is None:
            raise DataError(f"{source}: reading COCO needs the image folder (--images)")
        return read_coco(source, image_dir)
    if kind == "voc":
        from detseg.data.voc import read_class_names

        return read_voc(source, split, read_class_names(Path(source), class_names))
    if kind == "yolo":
        return read_yolo(source, split)
    raise DataError(f"unknown format '{kind}' (coco, voc, yolo)")


def _copy_image(entry: ImageEntry, folder: Path, name: str | None = None) -> str:
    name = name or entry.path.name
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry.path.resolve() != target.resolve():
        shutil.copy2(entry.path, target)
    return name


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
