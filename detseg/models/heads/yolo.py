"""Anchor-based YOLO (v2/v3 style): anchors per scale, sigmoid centre offsets, exp sizes,
objectness with BCE, and an ignore zone.

On a map of stride ``t``, cell ``(i, j)`` and anchor ``(p_w, p_h)`` the head's outputs
``(t_x, t_y, t_w, t_h, t_o, c_1..c_C)`` give the box::

    b_x = (sigmoid(t_x) + j) * t     b_w = p_w * exp(t_w)
    b_y = (sigmoid(t_y) + i) * t     b_h = p_h * exp(t_h)

and objectness ``sigmoid(t_o)``. Scores are ``objectness * p(class)``. ``box_decode: v5``
is YOLOv5's ``b_x = (2 sigmoid(t_x) - 0.5 + j) * t``, ``b_w = p_w (2 sigmoid(t_w))^2``:
the centre can leave its cell by half a cell (neighbour cells reach it), the size at most
4x the anchor. ``decoupled: true`` predicts classes from a branch of their own.

Training: ``assigner: max_iou`` (YOLOv3) assigns each ground truth to the one anchor, over
all scales, whose shape fits it best (IoU of the two boxes put on one centre), at the cell
that holds its centre; ``ratio`` (YOLOv5) to every anchor within ``anchor_ratio_threshold``
in width and height ratio, at the centre cell and its two nearest neighbours
(:mod:`detseg.ops.yolo_assign` gives both rules). A prediction two objects claim keeps the
first. With ``N+`` the number of assigned predictions in the batch (1 when there is none):

- ``loss_box``: ``box_loss: ciou`` or ``giou`` is ``1 - CIoU`` / ``1 - GIoU`` of the decoded
  box (torchvision.ops; CIoU: Zheng et al. 2020); ``xywh`` is the squared error of the
  decoded centre offset in the cell (``sigmoid(t_x), sigmoid(t_y)`` under ``v3``) to the
  object's and of the decoded ``log(b_w / p_w), log(b_h / p_h)`` (``t_w, t_h`` under ``v3``)
  to ``log(w / p_w), log(h / p_h)``, weighted by ``2 - w h / input area`` (small boxes count
  more); summed over positives / N+;
- ``loss_obj``: BCE of objectness, target 1 at assigned predictions (``objectness_target:
  one``) or the IoU of the assigned prediction's box with its object (``iou``, detached:
  the score learns how well its box fits), and 0 elsewhere, except unassigned predictions
  whose decoded box already overlaps a ground truth with IoU > ``ignore_threshold``: they
  are left out (they are good boxes, just not the chosen one). Summed / N+;
- ``loss_cls``: at assigned predictions, BCE per class (``class_loss: bce``, independent
  classes) or softmax cross-entropy (``ce``). Summed / N+.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
import torchvision.ops as tv_ops
from torch import Tensor, nn

from detseg.config import NonNegativeFloat, PositiveInt, Range, UnitInterval
from detseg.errors import ConfigError
from detseg.models.backbones.base import FeatureSpec, select_features
from detseg.models.heads.base import DenseHead, ignore_boxes
from detseg.ops import aligned_box_iou, box_iou, class_weight_vector
from detseg.ops.matcher import near_ignore_regions
from detseg.ops.postprocess import select_detections
from detseg.ops.yolo_assign import Positive, max_iou_assign, ratio_assign
from detseg.registry import DENSE_HEADS
from detseg.structures import DetSample, Instances

MAX_LOG_SCALE = math.log(1000.0 / 16)  # exp clamp: a box at most 62.5x its anchor
CHOICES = {"box_loss": ("ciou", "giou", "xywh"), "class_loss": ("bce", "ce"), "assigner": ("max_iou", "ratio"),
           "objectness_target": ("one", "iou"), "box_decode": ("v3", "v5")}


def conv_bn_leaky(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.1, inplace=True))


@dataclass
class YoloOutput:
    """Per map ``k``: ``maps[k]`` the raw outputs ``[N, A, H, W, 5 + C]`` and ``boxes[k]``
    their decoded boxes ``[N, A, H, W, 4]`` (xyxy pixels of an input of ``image_size``)."""

    maps: list[Tensor]
    boxes: list[Tensor]
    image_size: tuple[int, int]


@dataclass
class YoloTargets:
    """What the loss compares the outputs with. Per map ``k`` (``[N, A, H, W]``):
    ``positive``, ``ignore`` (left out of the objectness loss) and ``objectness`` (the
    target, 0 off the positives). Per positive ``p``, in assignment order: ``where[p]`` its
    ``(image, map, anchor, row, column)``, ``boxes[p]`` its object (xyxy) and ``labels[p]``."""

    positive: list[Tensor]
    ignore: list[Tensor]
    objectness: list[Tensor]
    where: list[tuple[int, int, int, int, int]]
    boxes: Tensor
    labels: Tensor


class DecoupledLayer(nn.Module):
    """Two branches on one map: 3x3 conv-BN-LeakyReLU -> 1x1 to ``A * 5`` box and objectness
    outputs, and the same to ``A * C`` class logits; concatenated per anchor as the
    coupled layer's ``A * (5 + C)`` channels."""

    def __init__(self, in_channels: int, hidden_dim: int, num_anchors: int, num_classes: int) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        self.box = nn.Sequential(conv_bn_leaky(in_channels, hidden_dim), nn.Conv2d(hidden_dim, num_anchors * 5, 1))
        self.cls = nn.Sequential(conv_bn_leaky(in_channels, hidden_dim),
                                 nn.Conv2d(hidden_dim, num_anchors * num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        box = self.box(x).view(n, self.num_anchors, 5, h, w)
        cls = self.cls(x).view(n, self.num_anchors, -1, h, w)
        return torch.cat([box, cls], 2).view(n, -1, h, w)


@DENSE_HEADS.register("yolo")
class YoloHead(DenseHead):
    """Per scale: 3x3 conv-BN-LeakyReLU then a 1x1 conv to ``A * (5 + C)`` outputs.

    Args:
        input_shape: feature shapes (supplied by the model builder).
        model_input_size: the square input side (supplied by the model builder).
        in_features: maps to predict from, finest first.
        num_classes: object classes. Supplied by the model builder
            (``model.num_classes``).
        anchors: per map, ``[width, height]`` pairs in input pixels (``tools/anchors.py``
            computes them from the training boxes).
        box_loss: ``ciou``, ``giou`` or ``xywh``.
        class_loss: ``bce`` or ``ce``.
        assigner: ``max_iou`` (YOLOv3, one anchor per object) or ``ratio`` (YOLOv5, every
            anchor within ``anchor_ratio_threshold`` at three cells; needs ``box_decode: v5``).
        anchor_ratio_threshold: the largest width or height ratio of box to anchor (either
            way) that ``ratio`` still assigns (YOLOv5: 4.0).
        objectness_target: ``one`` (YOLOv3) or ``iou`` (the assigned box's IoU, detached).
        box_decode: ``v3`` (``sigmoid`` centre, ``exp`` size) or ``v5`` (``2 sigmoid - 0.5``
            centre, ``(2 sigmoid)^2`` size).
        decoupled: class logits from a branch of their own (:class:`DecoupledLayer`).
        ignore_threshold: unassigned predictions above this IoU get no objectness loss (0.5).
        lambda_box, lambda_obj, lambda_cls: term weights.
        hidden_dim: width of the 3x3 conv.
        objectness_prior: the objectness every prediction starts from (bias init), so that
            the many empty cells do not swamp the first iterations.
        score_threshold, nms_threshold, candidates_per_class, detections_per_image: inference.
        class_weights: one weight per class for the classification loss of imbalanced data
            (see :func:`~detseg.ops.losses.class_weight_vector`).
    """

    def __init__(
        self,
        input_shape: dict[str, FeatureSpec],
        model_input_size: int,
        in_features: Sequence[str],
        num_classes: int,
        anchors: Sequence[Sequence[Sequence[float]]],
        box_loss: Literal["ciou", "giou", "xywh"] = "ciou",
        class_loss: Literal["bce", "ce"] = "bce",
        assigner: Literal["max_iou", "ratio"] = "max_iou",
        anchor_ratio_threshold: Annotated[float, Range(1, low_open=True)] = 4.0,
        objectness_target: Literal["one", "iou"] = "one",
        box_decode: Literal["v3", "v5"] = "v3",
        decoupled: bool = False,
        ignore_threshold: UnitInterval = 0.5,
        lambda_box: NonNegativeFloat = 1.0,
        lambda_obj: NonNegativeFloat = 1.0,
        lambda_cls: NonNegativeFloat = 1.0,
        hidden_dim: PositiveInt = 128,
        objectness_prior: UnitInterval = 0.01,
        score_threshold: UnitInterval = 0.01,
        nms_threshold: UnitInterval = 0.5,
        candidates_per_class: PositiveInt = 1000,
        detections_per_image: PositiveInt = 100,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        specs = select_features(input_shape, list(in_features), "yolo head")
        if len(anchors) != len(in_features):
            raise ConfigError(f"yolo head: {len(in_features)} in_features but anchors for {len(anchors)} maps; "
                              f"give one list of [w, h] per map (tools/anchors.py writes them)")
        for key, value in (("box_loss", box_loss), ("class_loss", class_loss), ("assigner", assigner),
                           ("objectness_target", objectness_target), ("box_decode", box_decode)):
            if value not in CHOICES[key]:
                raise ConfigError(f"yolo head: {key} must be one of {list(CHOICES[key])}, got {value!r}")
        if assigner == "ratio" and box_decode == "v3":
            raise ConfigError("yolo head: assigner: ratio also trains the two neighbouring cells of an object's "
                              "centre, which box_decode: v3 cannot reach (its centre stays inside the cell); "
                              "set box_decode: v5")
        self.in_features = list(in_features)
        self.strides = [specs[n].stride for n in in_features]
        self.num_classes = num_classes
        for level in anchors:
            if not level or any(len(a) != 2 or min(a) <= 0 for a in level):
                raise ConfigError(f"yolo head: anchors must be, per map, a list of [width, height] pairs of "
                                  f"positive pixels, got {list(level)} (tools/anchors.py writes them)")
        self.anchors = [torch.tensor(level, dtype=torch.float32) for level in anchors]
        self.input_size = model_input_size
        self.box_loss, self.class_loss = box_loss, class_loss
        self.assigner, self.anchor_ratio_threshold = assigner, anchor_ratio_threshold
        self.objectness_target, self.box_decode = objectness_target, box_decode
        self.ignore_threshold = ignore_threshold
        self.lambda_box, self.lambda_obj, self.lambda_cls = lambda_box, lambda_obj, lambda_cls
        self.outputs = 5 + num_classes
        if decoupled:
            self.layers = nn.ModuleList(DecoupledLayer(specs[n].channels, hidden_dim, len(a), num_classes)
                                        for n, a in zip(in_features, self.anchors))
        else:
            self.layers = nn.ModuleList(
                nn.Sequential(conv_bn_leaky(specs[n].channels, hidden_dim),
                              nn.Conv2d(hidden_dim, len(a) * self.outputs, 1))
                for n, a in zip(in_features, self.anchors))
        for layer, level_anchors in zip(self.layers, self.anchors):
            last = layer.box[-1] if decoupled else layer[-1]
            bias = last.bias.detach().view(len(level_anchors), -1)
            bias.zero_()
            bias[:, 4] = -math.log((1 - objectness_prior) / objectness_prior)
        self.register_buffer("class_weights", class_weight_vector(class_weights, num_classes, "yolo head"),
                             persistent=False)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.candidates_per_class = candidates_per_class
        self.detections_per_image = detections_per_image

    def forward(self, features: dict[str, Tensor], image_size: tuple[int, int]) -> YoloOutput:
        """Raw outputs per map and the boxes they decode to."""
        maps = []
        for name, layer, level_anchors in zip(self.in_features, self.layers, self.anchors):
            x = layer(features[name])
            n, _, h, w = x.shape
            maps.append(x.view(n, len(level_anchors), self.outputs, h, w).permute(0, 1, 3, 4, 2))
        return YoloOutput(maps, [self.decode(r, k) for k, r in enumerate(maps)], image_size)

    def decode(self, raw: Tensor, level: int) -> Tensor:
        """Boxes ``[N, A, H, W, 4]`` xyxy input pixels from one map's raw outputs."""
        _, _, h, w, _ = raw.shape
        stride = self.strides[level]
        rows = torch.arange(h, device=raw.device, dtype=raw.dtype).view(h, 1)
        cols = torch.arange(w, device=raw.device, dtype=raw.dtype).view(1, w)
        anchors = self.anchors[level].to(raw)
        if self.box_decode == "v5":
            cx = (raw[..., 0].sigmoid() * 2 - 0.5 + cols) * stride
            cy = (raw[..., 1].sigmoid() * 2 - 0.5 + rows) * stride
            bw = anchors[:, 0].view(-1, 1, 1) * (raw[..., 2].sigmoid() * 2).pow(2)
            bh = anchors[:, 1].view(-1, 1, 1) * (raw[..., 3].sigmoid() * 2).pow(2)
        else:
            cx = (raw[..., 0].sigmoid() + cols) * stride
            cy = (raw[..., 1].sigmoid() + rows) * stride
            bw = anchors[:, 0].view(-1, 1, 1) * raw[..., 2].clamp(max=MAX_LOG_SCALE).exp()
            bh = anchors[:, 1].view(-1, 1, 1) * raw[..., 3].clamp(max=MAX_LOG_SCALE).exp()
        return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)

    def positives(self, boxes: Tensor, feature_sizes: Sequence[tuple[int, int]]) -> list[Positive]:
        """The ``(object, map, anchor, row, column)`` positives of ground-truth boxes (``[G, 4]``
        xyxy input pixels) under the head's assigner (:mod:`detseg.ops.yolo_assign`)."""
        if self.assigner == "ratio":
            return ratio_assign(boxes, self.anchors, self.strides, feature_sizes, self.anchor_ratio_threshold)
        return max_iou_assign(boxes, self.anchors, self.strides, feature_sizes)

    def assign(self, boxes: Tensor, feature_sizes: Sequence[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
        """The ``(map, anchor, row, column)`` of each of :meth:`positives`."""
        return [p[1:] for p in self.positives(boxes, feature_sizes)]

    @torch.no_grad()
    def targets(self, raw: YoloOutput, samples: Sequence[DetSample]) -> YoloTargets:
        """Positives, ignored predictions and objectness targets of a batch (:class:`YoloTargets`)."""
        maps, decoded = raw.maps, raw.boxes
        sizes = [tuple(r.shape[2:4]) for r in maps]
        positive = [torch.zeros(r.shape[:4], dtype=torch.bool, device=r.device) for r in maps]
        ignore = [torch.zeros_like(p) for p in positive]
        objectness = [torch.zeros(r.shape[:4], dtype=r.dtype, device=r.device) for r in maps]
        where, target_box, target_label = [], [], []
        for n, sample in enumerate(samples):
            crowd = ignore_boxes(sample)
            if crowd is not None and len(crowd):  # predictions on a crowd region are not background
                for k, d in enumerate(decoded):
                    ignore[k][n] |= near_ignore_regions(d[n].reshape(-1, 4), crowd).view_as(ignore[k][n])
            boxes = sample.gt.boxes.tensor.to(maps[0].device).float()
            if len(boxes) == 0:
                continue
            for k, d in enumerate(decoded):  # good boxes that are not the chosen ones keep quiet
                ignore[k][n] |= box_iou(d[n].reshape(-1, 4), boxes).max(1).values.view_as(ignore[k][n]) \
                    > self.ignore_threshold
            labels = sample.gt.labels.tolist()
            for g, k, a, i, j in self.positives(boxes, sizes):
                if positive[k][n, a, i, j]:
                    continue  # an anchor and cell two objects claim: the first keeps it
                positive[k][n, a, i, j] = True
                where.append((n, k, a, i, j))
                target_box.append(boxes[g])
                target_label.append(labels[g])
        device = maps[0].device
        boxes = torch.stack(target_box) if target_box else torch.zeros(0, 4, device=device)
        if self.objectness_target == "iou" and where:
            predicted = torch.stack([decoded[k][n, a, i, j] for n, k, a, i, j in where])
            score = aligned_box_iou(predicted.float(), boxes).clamp(min=0)
        else:
            score = torch.ones(len(where), device=device)
        for (n, k, a, i, j), s in zip(where, score):
            objectness[k][n, a, i, j] = s
        return YoloTargets(positive, ignore, objectness, where, boxes,
                           torch.tensor(target_label, dtype=torch.int64, device=device))

    def loss(self, raw: YoloOutput, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        maps, decoded, image_size = raw.maps, raw.boxes, raw.image_size
        targets = self.targets(raw, samples)
        num_positive = max(len(targets.where), 1)
        objectness = torch.cat([r[..., 4].flatten() for r in maps])
        is_positive = torch.cat([p.flatten() for p in targets.positive])
        counted = is_positive | ~torch.cat([i.flatten() for i in targets.ignore])
        target_obj = torch.cat([t.flatten() for t in targets.objectness]).to(objectness.dtype)
        loss_obj = F.binary_cross_entropy_with_logits(
            objectness[counted], target_obj[counted], reduction="sum") / num_positive
        if not targets.where:
            zero = sum(r.sum() for r in maps) * 0.0
            return {"loss_box": zero, "loss_obj": self.lambda_obj * loss_obj, "loss_cls": zero}
        pred_raw = torch.stack([maps[k][n, a, i, j] for n, k, a, i, j in targets.where])
        pred_box = torch.stack([decoded[k][n, a, i, j] for n, k, a, i, j in targets.where])
        labels = targets.labels
        where = torch.tensor([p[1:] for p in targets.where], device=pred_raw.device)
        loss_box = self._box_loss(pred_raw, pred_box, targets.boxes, where, image_size).sum()
        logits = pred_raw[:, 5:]
        if self.class_loss == "bce":
            per_object = F.binary_cross_entropy_with_logits(
                logits, F.one_hot(labels, self.num_classes).to(logits.dtype), reduction="none").sum(-1)
        else:
            per_object = F.cross_entropy(logits, labels, reduction="none")
        if self.class_weights is not None:
            per_object = per_object * self.class_weights.to(per_object)[labels]
        loss_cls = per_object.sum()
        return {"loss_box": self.lambda_box * loss_box / num_positive, "loss_obj": self.lambda_obj * loss_obj,
                "loss_cls": self.lambda_cls * loss_cls / num_positive}

    def _box_loss(self, raw: Tensor, boxes: Tensor, target: Tensor, where: Tensor, image_size: tuple[int, int]) -> Tensor:
        """Per positive box loss; ``where`` holds each positive's ``(map, anchor, row, column)``."""
        if self.box_loss == "ciou":
            return tv_ops.complete_box_iou_loss(boxes, target, reduction="none")
        if self.box_loss == "giou":
            return tv_ops.generalized_box_iou_loss(boxes, target, reduction="none")
        strides = torch.tensor(self.strides, device=raw.device, dtype=raw.dtype)[where[:, 0]]
        anchors = torch.stack([self.anchors[k][a] for k, a in where[:, :2].tolist()]).to(raw)
        centre = (target[:, :2] + target[:, 2:]) / 2 / strides[:, None] - where[:, [3, 2]]
        size = target[:, 2:] - target[:, :2]
        weight = 2 - size.prod(1) / (image_size[0] * image_size[1])
        if self.box_decode == "v5":  # the offset in the cell and the log of size / anchor, as decoded
            offset, log_size = raw[:, :2].sigmoid() * 2 - 0.5, 2 * (math.log(2) + F.logsigmoid(raw[:, 2:4]))
        else:
            offset, log_size = raw[:, :2].sigmoid(), raw[:, 2:4]
        error = (offset - centre).pow(2).sum(1) + (log_size - (size / anchors).log()).pow(2).sum(1)
        return weight * error

    @torch.no_grad()
    def predict(self, raw: YoloOutput, samples: Sequence[DetSample]) -> list[Instances]:
        n = raw.maps[0].shape[0]
        boxes = torch.cat([b.reshape(n, -1, 4) for b in raw.boxes], 1)
        flat = torch.cat([r.reshape(n, -1, self.outputs) for r in raw.maps], 1)
        class_prob = flat[..., 5:].sigmoid() if self.class_loss == "bce" else flat[..., 5:].softmax(-1)
        scores = flat[..., 4:5].sigmoid() * class_prob
        return [
            select_detections(boxes[i], scores[i], raw.image_size, self.score_threshold, self.nms_threshold,
                              self.detections_per_image, self.candidates_per_class)
            for i in range(n)
        ]


__all__ = ["DecoupledLayer", "YoloHead", "YoloOutput", "YoloTargets"]
