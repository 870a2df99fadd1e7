"""A data set's annotations as a gallery page (``tools/browse.py``): see bad labels before
training.

Each image is drawn as the data set gives it to training, before transforms: boxes in the
ground-truth colour with their class, crowd / difficult regions in grey, and for a data set
of label maps only, the map overlaid. The data doctor's findings about an image are listed
on its card and are its kinds in the filter, with ``crowd`` (it has crowd / difficult
regions) and ``no_objects``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detseg.evaluation.gallery import draw
from detseg.evaluation.gallery.draw import CROWD, GROUND_TRUTH, Mark
from detseg.evaluation.gallery.evaluation import image_name
from detseg.evaluation.gallery.page import IMAGE_FOLDER, PAGE, Card, Page, write_gallery_page

NO_OBJECTS = "no_objects"


def browse_order(dataset: Any, flagged: Mapping[str, Sequence[Any]], limit: int) -> list[int]:
    """The data-set indices to draw: images with findings first, then the others in order,
    ``limit`` in all."""
    names = [image_name(dataset, i, None) for i in range(len(dataset))] if flagged else []
    first = [i for i, name in enumerate(names) if name in flagged]
    chosen = set(first)
    rest = (i for i in range(len(dataset)) if i not in chosen)
    return [*first, *rest][:limit]


def _instance_card(record: Any, class_names: Sequence[str]) -> tuple[np.ndarray, list[str], list[str]]:
    labels, ignore = record.labels.tolist(), record.ignore.tolist()
    marks = [Mark(box, CROWD if crowd else GROUND_TRUTH, f"crowd {class_names[label]}" if crowd else class_names[label])
             for box, label, crowd in zip(record.boxes.tolist(), labels, ignore)]
    counts = Counter(class_names[label] for label, crowd in zip(labels, ignore) if not crowd)
    lines = [f"{sum(counts.values())} object(s)" + (": " + ", ".join(f"{n} {c}" for c, n in counts.items())
                                                     if counts else "")]
    if any(ignore):
        lines.append(f"{sum(ignore)} crowd / difficult region(s)")
    height, width = record.image.shape[:2]
    lines.append(f"{width}x{height} pixels")
    present = sorted({class_names[label] for label in labels}, key=class_names.index)
    return draw.draw_marks(record.image, marks), lines, present


def _label_map_card(record: Any, class_names: Sequence[str], ignore_index: int
                    ) -> tuple[np.ndarray, list[str], list[str], list[tuple[str, tuple[int, int, int]]]]:
    sem_seg = record.sem_seg.astype(np.int64)
    colours = draw.class_colours(len(class_names))
    values = [int(v) for v in np.unique(sem_seg) if v != ignore_index]
    present = [v for v in values if 0 < v < len(class_names)]
    picture = draw.panels([record.image, draw.overlay_label_map(record.image, sem_seg, len(class_names), ignore_index)],
                          ["image", "label map"])
    height, width = record.image.shape[:2]
    lines = [f"{width}x{height} pixels; classes: " + (", ".join(class_names[v] for v in present) or "background only")]
    return (picture, lines, [class_names[v] for v in present],
            [(class_names[v], tuple(int(c) for c in colours[v])) for v in present])


def write_dataset_gallery(out: str | Path, dataset: Any, title: str, indices: Sequence[int],
                          findings: Mapping[str, Sequence[Any]] | None = None, notes: Sequence[str] = (),
                          ignore_index: int = 255) -> Path:
    """Write ``out/gallery.html`` and its PNGs: images ``indices`` of ``dataset`` with their
    annotations drawn. ``findings``: the doctor's problems by image name (each with
    ``kind``, ``level`` and ``detail``); ``notes``: lines listed above the cards."""
    out = Path(out)
    findings = findings or {}
    instances = getattr(dataset, "has_instances", True)
    class_names = list(dataset.class_names if instances else dataset.semantic_class_names)
    cards, kinds = [], {}
    for rank, index in enumerate(indices):
        record = dataset.load(index)
        name = image_name(dataset, index, record.image_id)
        chips: list[tuple[str, tuple[int, int, int]]] = []
        if instances:
            picture, lines, present = _instance_card(record, class_names)
        elif record.sem_seg is not None:
            picture, lines, present, chips = _label_map_card(record, class_names, ignore_index)
        else:
            picture, lines, present = draw.draw_marks(record.image, []), ["no annotations"], []
        own = [f"{p.level}: {p.kind}: {p.detail}" for p in findings.get(name, ())]
        image_kinds = list(dict.fromkeys(p.kind for p in findings.get(name, ())))
        if instances and bool(np.asarray(record.ignore).any()):
            image_kinds.append(CROWD)
        if instances and not (~np.asarray(record.ignore, bool)).any():
            image_kinds.append(NO_OBJECTS)
        for kind in image_kinds:
            kinds.setdefault(kind, {CROWD: "crowd / difficult regions", NO_OBJECTS: "no objects"}.get(kind, kind))
        file_name = f"{IMAGE_FOLDER}/image_{rank:04d}.png"
        draw.write_png(out / file_name, picture)
        tags = [(kind, c) for kind in image_kinds for c in (present or [""])]
        cards.append(Card(file_name, name, [*lines, *own], present, tags, chips))
    legend = ([(draw.ROLE_NAMES[GROUND_TRUTH], draw.COLOURS[GROUND_TRUTH]), (draw.ROLE_NAMES[CROWD], draw.COLOURS[CROWD])]
              if instances else [])
    intro = [f"{len(cards)} of {len(dataset)} images, as the data set reads them (before transforms)"
             + ("; images with the data doctor's findings first." if findings else ".")]
    page = Page(title, intro, kinds, legend, class_names if instances else class_names[1:], notes)
    return write_gallery_page(out / PAGE, page, cards)
