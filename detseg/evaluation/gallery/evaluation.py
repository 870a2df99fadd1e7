"""The report's gallery page: the worst images of an evaluation, with their errors drawn.

Detection: the :data:`WORST` images with the most errors (:mod:`detseg.evaluation.errors`:
missed objects, false positives, wrong classes, poor localisations; ties in image order),
ground truth and predictions drawn in the colours of
:mod:`~detseg.evaluation.gallery.draw`, each labelled with what it became. Segmentation:
the images of lowest per-image mIoU that the evaluator kept
(:attr:`~detseg.evaluation.segmentation.SegmentationEvaluator.worst`), as ground truth,
prediction and error map side by side.

Images are read from the data set the evaluator was built for (``evaluator.dataset``);
an evaluator built from files has none, and gets no gallery.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detseg.evaluation.errors import (
    ERROR_KINDS,
    FALSE_POSITIVE,
    KIND_NAMES,
    MIN_ERROR_FRACTION,
    MISSED,
    POOR_LOCALISATION,
    TP,
    WRONG_CLASS,
    DetectionImage,
    coco_image_errors,
    error_tags,
    segmentation_image_errors,
)
from detseg.evaluation.gallery import draw
from detseg.evaluation.gallery.draw import CROWD, GROUND_TRUTH, Mark
from detseg.evaluation.gallery.page import IMAGE_FOLDER, PAGE, Card, Page, write_gallery_page
from detseg.evaluation.segmentation import confusion_matrix

WORST = 24
SCORE_THRESHOLD = 0.5
REPORT_LINK = ("report.html", "report: metrics and plots")


def image_name(dataset: Any, index: int, image_id: Any) -> str:
    """What the data set calls image ``index`` (its file name where it has entries)."""
    entries = getattr(dataset, "entries", None)
    name = getattr(entries[index], "name", None) if entries is not None and index < len(entries) else None
    return str(name) if name else f"image {image_id}"


def records_by_id(dataset: Any, ids: Iterable[Any]) -> dict[Any, tuple[int, Any]]:
    """``{image_id: (index, record)}`` of the untransformed records of ``ids``."""
    wanted, found = set(ids), {}
    entries = getattr(dataset, "entries", None) or []
    guess = {getattr(e, "image_id", None): i for i, e in enumerate(entries)}
    for image_id in wanted:
        if image_id in guess and (record := dataset.load(guess[image_id])).image_id == image_id:
            found[image_id] = (guess[image_id], record)
    for index in range(len(dataset)):  # data sets without entries: read until all are found
        if len(found) == len(wanted):
            break
        record = dataset.load(index)
        if record.image_id in wanted:
            found[record.image_id] = (index, record)
    return found


def detection_marks(image: DetectionImage, class_names: Sequence[str]) -> list[Mark]:
    """Every object, crowd region and analysed prediction of ``image`` as a labelled box."""
    errors, names = image.errors, class_names
    marks = [Mark(box, MISSED if kind == MISSED else GROUND_TRUTH,
                  f"missed {names[label]}" if kind == MISSED else names[label])
             for box, label, kind in zip(image.gt.boxes.tensor.tolist(), image.gt.labels.tolist(), errors.gt_kinds)]
    marks += [Mark(box, CROWD, "crowd") for box in image.ignore.boxes.tensor.tolist()]
    for i, kind in enumerate(errors.pred_kinds):
        if kind is None:
            continue
        name, score = names[int(image.pred.labels[i])], float(image.pred.scores[i])
        text = {TP: f"{name} {score:.2f}", FALSE_POSITIVE: f"FP {name} {score:.2f}",
                POOR_LOCALISATION: f"{name} IoU {errors.pred_iou[i]:.2f}"}.get(kind, f"{name} {score:.2f}")
        if kind == WRONG_CLASS:
            text = f"{name} (is {names[int(image.gt.labels[errors.pred_target[i]])]}) {score:.2f}"
        marks.append(Mark(image.pred.boxes.tensor[i].tolist(), kind, text))
    return marks


def count_text(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = [f"{n} {KIND_NAMES[kind]}" for kind, n in counts.items() if n]
    return f"{total} error{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


def detection_gallery(out: Path, dataset: Any, ground_truth: dict[str, Any], results: Sequence[dict[str, Any]],
                      worst: int = WORST, links: Sequence[tuple[str, str]] = (REPORT_LINK,)) -> Path:
    """Write ``out/gallery.html`` and its PNGs: the ``worst`` images with the most errors."""
    categories = sorted(ground_truth["categories"], key=lambda c: c["id"])
    class_names = [str(c.get("name", c["id"])) for c in categories]
    file_names = {im["id"]: im.get("file_name") for im in ground_truth["images"]}
    images = coco_image_errors(ground_truth, results, score_threshold=SCORE_THRESHOLD)
    ranked = sorted((im for im in images if im.errors.num_errors), key=lambda im: -im.errors.num_errors)[:worst]
    records = records_by_id(dataset, [im.image_id for im in ranked])
    cards = []
    for rank, image in enumerate(ranked):
        index, record = records[image.image_id]
        file_name = f"{IMAGE_FOLDER}/worst_{rank:03d}.png"
        draw.write_png(out / file_name, draw.draw_marks(record.image, detection_marks(image, class_names)))
        analysed = sum(kind is not None for kind in image.errors.pred_kinds)
        tp = sum(kind == TP for kind in image.errors.pred_kinds)
        present = {class_names[int(label)] for label in [*image.gt.labels.tolist(), *image.pred.labels.tolist()]}
        cards.append(Card(file_name, file_names.get(image.image_id) or image_name(dataset, index, image.image_id),
                          [count_text(image.errors.counts()),
                           (f"{tp} true positive(s); {analysed} prediction(s) scoring >= {SCORE_THRESHOLD:g}; "
                            f"{len(image.gt)} object(s)")],
                          [c for c in class_names if c in present], error_tags(image, class_names)))
    with_errors = sum(1 for im in images if im.errors.num_errors)
    page = Page(
        "Worst images: detection errors",
        [(f"The {len(cards)} images with the most errors ({with_errors} of {len(images)} images have errors). "
          f"Predictions scoring at least {SCORE_THRESHOLD:g} are analysed, highest score first."),
         ("True positive: IoU >= 0.5 with an object of its class not yet matched. Wrong class: IoU >= 0.5 with an "
         "object of another class. Poor localisation: 0.1 <= IoU < 0.5 with an object of its class. False "
         "positive: anything else, duplicates of a matched object included. Missed: an object that no "
         "prediction matched or pointed at (a wrong-class or poorly placed prediction counts once, as that "
         "error). Predictions on crowd regions are not counted.")],
        {kind: KIND_NAMES[kind] for kind in ERROR_KINDS},
        [(draw.ROLE_NAMES[role], draw.COLOURS[role])
         for role in (GROUND_TRUTH, MISSED, TP, FALSE_POSITIVE, WRONG_CLASS, POOR_LOCALISATION, CROWD)],
        class_names, links=links)
    return write_gallery_page(out / PAGE, page, cards)


def segmentation_gallery(out: Path, dataset: Any, worst_images: Sequence[tuple[float, int, Any]],
                         class_names: Sequence[str], ignore_index: int,
                         links: Sequence[tuple[str, str]] = (REPORT_LINK,)) -> Path:
    """Write ``out/gallery.html`` and its PNGs: ``worst_images`` (``(mIoU, data-set index,
    (prediction, ground truth))``, lowest first) with their error maps."""
    colours = draw.class_colours(len(class_names))
    cards = []
    for rank, (miou, index, (pred, target)) in enumerate(worst_images):
        record = dataset.load(index)
        image = record.image
        if image.shape[:2] != pred.shape:
            raise ValueError(f"image {index}: prediction {pred.shape} is not the image's size {image.shape[:2]}")
        matrix = confusion_matrix(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target.astype(np.int64)),
                                  len(class_names), ignore_index).numpy()
        errors = segmentation_image_errors(matrix)
        valid = max(int(matrix.sum()), 1)
        file_name = f"{IMAGE_FOLDER}/worst_{rank:03d}.png"
        draw.write_png(out / file_name, draw.panels(
            [draw.overlay_label_map(image, target, len(class_names), ignore_index),
             draw.overlay_label_map(image, pred, len(class_names), ignore_index),
             draw.error_map(image, pred, target, ignore_index)], ["ground truth", "prediction", "errors"]))
        present = sorted({int(v) for v in np.unique(np.concatenate([pred.ravel(), target.ravel()]))
                          if 0 < v < len(class_names)})
        detail = ", ".join(f"{KIND_NAMES[kind]} {class_names[c]} {100 * n / valid:.1f}%"
                           for (kind, c), n in sorted(errors.pixels.items(), key=lambda item: -item[1]))
        cards.append(Card(file_name, image_name(dataset, index, record.image_id),
                          [f"mIoU {miou:.3f}", f"wrong pixels: {detail}" if detail else
                           f"no error over {100 * MIN_ERROR_FRACTION:g}% of the pixels"],
                          [class_names[c] for c in present],
                          [(kind, class_names[c]) for kind, c in errors.pixels],
                          [(class_names[c], tuple(int(v) for v in colours[c])) for c in present]))
    page = Page(
        "Worst images: segmentation errors",
        [(f"The {len(cards)} images of lowest per-image mIoU (the mean IoU over the classes in the image's "
          "ground truth or prediction)."),
         ("Error map: missed = an object class predicted as background (class 0); false positive = background "
          "predicted as a class; wrong class = one object class predicted as another. A kind is listed for an "
          f"image when it covers at least {100 * MIN_ERROR_FRACTION:g}% of its pixels.")],
        {kind: KIND_NAMES[kind] for kind in (MISSED, FALSE_POSITIVE, WRONG_CLASS)},
        [(KIND_NAMES[kind], draw.COLOURS[kind]) for kind in (MISSED, FALSE_POSITIVE, WRONG_CLASS)]
        + [("ignored pixels", (40, 40, 40))],
        list(class_names[1:]), links=links)
    return write_gallery_page(out / PAGE, page, cards)


def write_evaluation_gallery(evaluator: Any, out: str | Path, results: Sequence[dict[str, Any]] | None = None,
                             worst_images: Sequence[tuple[float, int, Any]] | None = None) -> Path | None:
    """The gallery of a finished evaluation, from what :func:`~detseg.evaluation.plots.
    write_evaluation_report` gathered (``results`` of a results evaluator, ``worst_images``
    of a segmentation evaluator); ``None`` when the evaluator has no data set to draw."""
    if getattr(evaluator, "dataset", None) is None:
        return None
    out = Path(out)
    if worst_images is not None:
        return segmentation_gallery(out, evaluator.dataset, worst_images, evaluator.class_names,
                                    evaluator.ignore_index)
    return detection_gallery(out, evaluator.dataset, evaluator.ground_truth, results or [])
