"""YOLO txt (Ultralytics' layout): the one reader and the one writer.

Layout::

    data.yaml           path: .   train: images/train   val: images/val   names: {0: cat, 1: dog}
    images/train/x.jpg  labels/train/x.txt   (one "class cx cy w h" line per object)

``cx cy w h`` are the box's centre and size divided by the image's width and height; no
label file means no objects. YOLO txt has no crowd regions and no masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from detseg.data.formats.entries import (
    IMAGE_SUFFIXES,
    Annotation,
    ImageEntry,
    LabeledSet,
    image_size,
    put_image,
)
from detseg.data.problems import Problem
from detseg.data.validation import check_box
from detseg.errors import DataError


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
    """Images in ``<path>/<split folder>`` (e.g. ``images/train``, searched recursively, in
    sorted order; image ids count from 0), labels in the matching ``labels/`` folder;
    sizes from the image headers. A missing YAML, split entry or image folder raises
    :class:`DataError`. Problems: images PIL cannot open (left out), malformed lines,
    class ids out of range, invalid boxes."""
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
            out.problems.append(Problem("error", "unreadable image", str(path), "not an image file PIL can open",
                                        image=name))
            continue
        entry = ImageEntry(path, name, index, *size)
        label_file = yolo_label_path(path)
        lines = label_file.read_text().splitlines() if label_file.is_file() else []
        for line_number, line in enumerate(lines, 1):
            if line.strip():
                annotation, issue = _read_line(line, entry, len(names))
                if issue is not None:
                    level, kind, detail = issue
                    out.problems.append(Problem(level, kind, str(label_file), detail, f"line {line_number}", name))
                if annotation is not None:
                    entry.annotations.append(annotation)
        out.images.append(entry)
    return out


def _read_line(line: str, entry: ImageEntry, num_classes: int) -> tuple[Annotation | None, tuple[str, str, str] | None]:
    """One ``class cx cy w h`` line: its annotation (None when rejected) and its ``(level,
    kind, detail)`` problem (None when there is none)."""
    try:
        cls, cx, cy, w, h = line.split()[:5]
        label, (cx, cy, w, h) = int(cls), (float(v) for v in (cx, cy, w, h))
    except ValueError:
        return None, ("error", "malformed label", f"expected 'class cx cy w h', got {line!r}")
    if not 0 <= label < num_classes:
        return None, ("error", "class not in category list", f"class {label} is not in 0..{num_classes - 1}")
    box, issue = check_box(np.array([(cx - w / 2) * entry.width, (cy - h / 2) * entry.height,
                                     (cx + w / 2) * entry.width, (cy + h / 2) * entry.height]),
                           entry.width, entry.height)
    return (None if box is None else Annotation(box, label)), issue


def write_yolo(labeled: LabeledSet, root: str | Path, split: str) -> Path:
    """``root/images/<split>/``, ``root/labels/<split>/`` and ``root/data.yaml`` (split
    entries already there are kept); crowd regions are left out. Returns the YAML path."""
    root = Path(root)
    for entry in labeled.images:
        name = put_image(entry, root / "images" / split)
        label_file = root / "labels" / split / Path(name).with_suffix(".txt")
        label_file.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for ann in entry.annotations:
            if ann.iscrowd:
                continue
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
