"""Per-image error analysis: what each prediction and each object of one image became.

Detection. Predictions scoring at least ``score_threshold`` (0.5, as in the detection
confusion matrix) are taken by decreasing score; IoU is the box IoU of
:func:`detseg.ops.box_iou`. Each prediction is exactly one of, tested in this order:

- ``tp`` (true positive): IoU >= ``iou_threshold`` (0.5) with an object of its own class that
  no higher-scoring prediction has matched; it matches the best such object.
- ``ignored``: IoU >= ``iou_threshold`` with a crowd / difficult region; not counted.
- ``false_positive`` (a duplicate): IoU >= ``iou_threshold`` with an object of its own class
  that a higher-scoring prediction already matched.
- ``wrong_class``: IoU >= ``iou_threshold`` with an object of another class (it points at the
  best such object).
- ``poor_localisation``: ``low_iou`` (0.1) <= IoU < ``iou_threshold`` with an object of its own
  class (it points at the best such object).
- ``false_positive``: anything else (background).

Each object (crowd regions left out) is ``matched`` by a true positive, or else takes the
kind of the first wrong-class or poorly-localised prediction that points at it, or else is
``missed``: an object the model found with the wrong class or a poor box counts once, as that
error, not again as missed. An image's errors are its missed objects plus its wrong-class,
poorly-localised and false-positive predictions.

Segmentation. Per image, from its pixel confusion matrix (rows ground truth, columns
prediction, ``ignore_index`` left out): the image's mIoU is
:func:`~detseg.evaluation.segmentation.segmentation_metrics`' over the classes in its ground
truth or prediction, and its errors, with class 0 as background, are ``missed`` (an object
class predicted as background), ``false_positive`` (background predicted as a class) and
``wrong_class`` (one object class predicted as another), each counted when it covers at least
:data:`MIN_ERROR_FRACTION` of the image's valid pixels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from detseg.evaluation.segmentation import segmentation_metrics
from detseg.ops import box_iou
from detseg.structures import Boxes, Instances

TP, IGNORED, MATCHED = "tp", "ignored", "matched"
MISSED, FALSE_POSITIVE, WRONG_CLASS, POOR_LOCALISATION = (
    "missed", "false_positive", "wrong_class", "poor_localisation")
ERROR_KINDS = (MISSED, FALSE_POSITIVE, WRONG_CLASS, POOR_LOCALISATION)
"""The four kinds of error, in the order the gallery lists them."""
KIND_NAMES = {MISSED: "missed", FALSE_POSITIVE: "false positive", WRONG_CLASS: "wrong class",
              POOR_LOCALISATION: "poor localisation"}
MIN_ERROR_FRACTION = 0.005
"""A segmentation error kind counts for an image from this fraction of its valid pixels."""


@dataclass
class ImageErrors:
    """The outcome of one image's detections.

    Attributes:
        pred_kinds: per prediction, in input order: one of ``tp``, ``ignored``,
            ``false_positive``, ``wrong_class``, ``poor_localisation``; ``None`` below the
            score threshold (not analysed).
        pred_target: per prediction, the object it matched or points at, or -1.
        pred_iou: per prediction, its IoU with that object (its best IoU with any object
            of its class when it points at none).
        gt_kinds: per object: ``matched``, ``missed``, ``wrong_class`` or
            ``poor_localisation``.
    """

    pred_kinds: list[str | None] = field(default_factory=list)
    pred_target: list[int] = field(default_factory=list)
    pred_iou: list[float] = field(default_factory=list)
    gt_kinds: list[str] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        """Errors per kind: missed objects, and the erroneous predictions by kind."""
        counts = Counter(k for k in self.pred_kinds if k in ERROR_KINDS)
        counts[MISSED] = sum(k == MISSED for k in self.gt_kinds)
        return Counter({kind: counts[kind] for kind in ERROR_KINDS})

    @property
    def num_errors(self) -> int:
        return sum(self.counts().values())


def classify_detections(pred: Instances, gt: Instances, ignore: Instances | None = None,
                        iou_threshold: float = 0.5, low_iou: float = 0.1,
                        score_threshold: float = 0.5) -> ImageErrors:
    """Classify one image's predictions and objects (see the module docstring).

    Args:
        pred: predictions with ``scores``, in the coordinates of ``gt``.
        gt: the objects to find (crowd regions left out).
        ignore: crowd / difficult regions, or ``None``.
    """
    if pred.scores is None:
        raise ValueError("predictions need scores")
    iou = box_iou(pred.boxes.tensor, gt.boxes.tensor)  # [P, G]
    ignore_iou = (box_iou(pred.boxes.tensor, ignore.boxes.tensor).amax(1) if ignore is not None and len(ignore)
                  else torch.zeros(len(pred)))
    same = pred.labels[:, None] == gt.labels[None, :]
    out = ImageErrors([None] * len(pred), [-1] * len(pred), [0.0] * len(pred), [MATCHED] * len(gt))
    matched = torch.zeros(len(gt), dtype=torch.bool)
    pointed: dict[int, str] = {}
    order = torch.argsort(pred.scores, descending=True, stable=True).tolist()
    for i in (i for i in order if float(pred.scores[i]) >= score_threshold):
        own, other = iou[i].where(same[i], -1.0), iou[i].where(~same[i], -1.0)
        free = own.masked_fill(matched, -1.0)
        kind, target = FALSE_POSITIVE, -1
        if len(gt) and float(free.max()) >= iou_threshold:
            kind, target = TP, int(free.argmax())
            matched[target] = True
        elif float(ignore_iou[i]) >= iou_threshold:
            kind = IGNORED
        elif len(gt) and float(own.max()) >= iou_threshold:
            target = int(own.argmax())  # a duplicate: stays a false positive
        elif len(gt) and float(other.max()) >= iou_threshold:
            kind, target = WRONG_CLASS, int(other.argmax())
        elif len(gt) and float(own.max()) >= low_iou:
            kind, target = POOR_LOCALISATION, int(own.argmax())
        out.pred_kinds[i], out.pred_target[i] = kind, target
        if target >= 0:
            out.pred_iou[i] = float(iou[i, target])
        elif len(gt) and bool(same[i].any()):
            out.pred_iou[i] = float(own.max())
        if kind in (WRONG_CLASS, POOR_LOCALISATION):
            pointed.setdefault(target, kind)
    for j in range(len(gt)):
        if not bool(matched[j]):
            out.gt_kinds[j] = pointed.get(j, MISSED)
    return out


def coco_instances(items: Sequence[dict[str, Any]], label_of: dict[Any, int], scored: bool) -> Instances:
    """COCO annotations or results (``bbox`` xywh, ``category_id``) as xyxy
    :class:`Instances` with labels ``label_of[category_id]`` (and ``score`` when ``scored``)."""
    xywh = torch.tensor([a["bbox"] for a in items], dtype=torch.float32).reshape(-1, 4)
    xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    return Instances(Boxes(xyxy), [label_of[a["category_id"]] for a in items], (0, 0),
                     scores=[a["score"] for a in items] if scored else None)


@dataclass
class DetectionImage:
    """One image's ground truth, predictions and their :class:`ImageErrors`."""

    image_id: Any
    gt: Instances
    ignore: Instances
    pred: Instances
    errors: ImageErrors


def coco_image_errors(ground_truth: dict[str, Any], results: Sequence[dict[str, Any]],
                      **thresholds: float) -> list[DetectionImage]:
    """Every image of a COCO ground truth dict with its results classified
    (:func:`classify_detections`; ``thresholds`` are its keyword arguments), in the
    ground truth's image order; labels are category indices in id order."""
    label_of = {c["id"]: i for i, c in enumerate(sorted(ground_truth["categories"], key=lambda c: c["id"]))}
    anns: dict[Any, list] = {im["id"]: [] for im in ground_truth["images"]}
    for ann in ground_truth["annotations"]:
        anns.setdefault(ann["image_id"], []).append(ann)
    preds: dict[Any, list] = {}
    for result in results:
        preds.setdefault(result["image_id"], []).append(result)
    images = []
    for image_id, items in anns.items():
        gt = coco_instances([a for a in items if not a.get("iscrowd", 0)], label_of, False)
        ignore = coco_instances([a for a in items if a.get("iscrowd", 0)], label_of, False)
        pred = coco_instances(preds.get(image_id, []), label_of, True)
        images.append(DetectionImage(image_id, gt, ignore, pred, classify_detections(pred, gt, ignore, **thresholds)))
    return images


def error_tags(image: DetectionImage, class_names: Sequence[str]) -> list[tuple[str, str]]:
    """``(kind, class name)`` of every error of ``image``; a wrong-class prediction gives
    both its own class and the object's."""
    tags = [(MISSED, class_names[int(label)]) for kind, label in zip(image.errors.gt_kinds, image.gt.labels)
            if kind == MISSED]
    for i, kind in enumerate(image.errors.pred_kinds):
        if kind in ERROR_KINDS:
            tags.append((kind, class_names[int(image.pred.labels[i])]))
            if kind == WRONG_CLASS:
                tags.append((kind, class_names[int(image.gt.labels[image.errors.pred_target[i]])]))
    return list(dict.fromkeys(tags))


@dataclass
class SegmentationImageErrors:
    """One image's per-image mIoU and its segmentation errors.

    Attributes:
        miou: mean IoU over the classes in the image's ground truth or prediction (NaN when
            every pixel is ignored).
        pixels: ``{(kind, class index): pixels}`` for every error that counts
            (:data:`MIN_ERROR_FRACTION`); a wrong-class error is listed under the true class.
    """

    miou: float
    pixels: dict[tuple[str, int], int]


def segmentation_image_errors(matrix: np.ndarray) -> SegmentationImageErrors:
    """Classify one image's pixel confusion matrix ``int[C, C]`` (see the module docstring)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    miou = segmentation_metrics(matrix, [str(c) for c in range(len(matrix))])["mIoU"]
    least = max(1, int(np.ceil(MIN_ERROR_FRACTION * matrix.sum())))
    pixels: dict[tuple[str, int], int] = {}
    for (true, predicted), count in np.ndenumerate(matrix):
        if true == predicted or count < least:
            continue
        kind = MISSED if predicted == 0 else FALSE_POSITIVE if true == 0 else WRONG_CLASS
        key = (kind, int(predicted) if kind == FALSE_POSITIVE else int(true))
        pixels[key] = pixels.get(key, 0) + int(count)
    return SegmentationImageErrors(miou, pixels)
