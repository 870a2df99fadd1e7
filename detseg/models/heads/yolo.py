"""Anchor-based YOLO (v2/v3 style): anchors per scale, sigmoid centre offsets, exp sizes,
objectness with BCE, and an ignore zone.

On a map of stride ``t``, cell ``(i, j)`` and anchor ``(p_w, p_h)`` the head's outputs
``(t_x, t_y, t_w, t_h, t_o, c_1..c_C)`` give the box::

    b_x = (sigmoid(t_x) + j) * t     b_w = p_w * exp(t_w)
    b_y = (sigmoid(t_y) + i) * t     b_h = p_h * exp(t_h)

and objectness ``sigmoid(t_o)``. Scores are ``objectness * p(class)``.

Training (YOLOv3): each ground truth is assigned to the one anchor, over all scales, whose
shape fits it best (IoU of the two boxes put on one centre), at the cell that holds its
centre. With ``N+`` the number of assigned predictions in the batch (1 when there is none):

- ``loss_box``: ``box_loss: ciou`` or ``giou`` is ``1 - CIoU`` / ``1 - GIoU`` of the decoded
  box (torchvision.ops); ``xywh`` is the squared error of ``sigmoid(t_x), sigmoid(t_y)`` to
  the centre inside the cell and of ``t_w, t_h`` to ``log(w / p_w), log(h / p_h)``,
  weighted by ``2 - w h / input area`` (small boxes count more); summed over positives / N+;
- ``loss_obj``: BCE of objectness, target 1 at assigned predictions and 0 elsewhere,
  except unassigned predictions whose decoded box already overlaps a ground truth with
  IoU > ``ignore_threshold``: they are left out (they are good boxes, just not the chosen
  one). Summed / N+;
- ``loss_cls``: at assigned predictions, BCE per class (``class_loss: bce``, independent
  classes) or softmax cross-entropy (``ce``). Summed / N+.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
import torchvision.ops as tv_ops
from torch import Tensor, nn

from detseg.config import NonNegativeFloat, PositiveInt, UnitInterval
from detseg.errors import ConfigError
from detseg.models.backbones.base import FeatureSpec, select_features
from detseg.models.heads.base import DenseHead, ignore_boxes
from detseg.ops import box_iou, class_weight_vector
from detseg.ops.kmeans_anchors import shape_iou
from detseg.ops.matcher import near_ignore_regions
from detseg.ops.postprocess import select_detections
from detseg.registry import DENSE_HEADS
from detseg.structures import DetSample, Instances

MAX_LOG_SCALE = math.log(1000.0 / 16)  # exp clamp: a box at most 62.5x its anchor


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
        if box_loss not in ("ciou", "giou", "xywh"):
            raise ConfigError(f"yolo head: box_loss must be ciou, giou or xywh, got {box_loss!r}")
        if class_loss not in ("bce", "ce"):
            raise ConfigError(f"yolo head: class_loss must be bce or ce, got {class_loss!r}")
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
        self.ignore_threshold = ignore_threshold
        self.lambda_box, self.lambda_obj, self.lambda_cls = lambda_box, lambda_obj, lambda_cls
        self.outputs = 5 + num_classes
        self.layers = nn.ModuleList(
            nn.Sequential(conv_bn_leaky(specs[n].channels, hidden_dim), nn.Conv2d(hidden_dim, len(a) * self.outputs, 1))
            for n, a in zip(in_features, self.anchors))
        for layer, level_anchors in zip(self.layers, self.anchors):
            bias = layer[-1].bias.detach().view(len(level_anchors), self.outputs)
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
        cx = (raw[..., 0].sigmoid() + cols) * stride
        cy = (raw[..., 1].sigmoid() + rows) * stride
        anchors = self.anchors[level].to(raw)
        bw = anchors[:, 0].view(-1, 1, 1) * raw[..., 2].clamp(max=MAX_LOG_SCALE).exp()
        bh = anchors[:, 1].view(-1, 1, 1) * raw[..., 3].clamp(max=MAX_LOG_SCALE).exp()
        return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)

    def assign(self, boxes: Tensor, feature_sizes: Sequence[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
        """For each ground-truth box (``[G, 4]`` xyxy input pixels) its ``(map, anchor, row,
        column)``: the best-fitting anchor shape over all maps, at the cell of the centre."""
        all_anchors = torch.cat(self.anchors)
        level_of = torch.cat([torch.full((len(a),), k) for k, a in enumerate(self.anchors)])
        first = torch.tensor([0] + [len(a) for a in self.anchors]).cumsum(0)
        wh = (boxes[:, 2:] - boxes[:, :2]).cpu().float().clamp(min=1e-6)
        best = shape_iou(wh, all_anchors).argmax(1)
        out = []
        for box, b in zip(boxes.cpu().tolist(), best.tolist()):
            level = int(level_of[b])
            h, w = feature_sizes[level]
            stride = self.strides[level]
            col = min(int((box[0] + box[2]) / 2 / stride), w - 1)
            row = min(int((box[1] + box[3]) / 2 / stride), h - 1)
            out.append((level, b - int(first[level]), row, col))
        return out

    def loss(self, raw: YoloOutput, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        maps, decoded, image_size = raw.maps, raw.boxes, raw.image_size
        sizes = [tuple(r.shape[2:4]) for r in maps]
        positive = [torch.zeros(r.shape[:4], dtype=torch.bool, device=r.device) for r in maps]
        ignore = [torch.zeros_like(p) for p in positive]
        pred_raw, pred_box, target_box, target_label, where = [], [], [], [], []
        for n, sample in enumerate(samples):
            crowd = ignore_boxes(sample)
            if crowd is not None and len(crowd):  # predictions on a crowd region are not background
                for k, d in enumerate(decoded):
                    ignore[k][n] |= near_ignore_regions(d[n].detach().reshape(-1, 4), crowd).view_as(ignore[k][n])
            boxes = sample.gt.boxes.tensor.to(maps[0].device).float()
            if len(boxes) == 0:
                continue
            with torch.no_grad():  # good boxes that are not the chosen ones keep quiet
                for k, d in enumerate(decoded):
                    ignore[k][n] |= box_iou(d[n].reshape(-1, 4), boxes).max(1).values.view_as(ignore[k][n]) \
                        > self.ignore_threshold
            for (k, a, i, j), box, label in zip(self.assign(boxes, sizes), boxes, sample.gt.labels.tolist()):
                if positive[k][n, a, i, j]:
                    continue  # two objects on one anchor and cell: the first keeps it
                positive[k][n, a, i, j] = True
                pred_raw.append(maps[k][n, a, i, j])
                pred_box.append(decoded[k][n, a, i, j])
                target_box.append(box)
                target_label.append(label)
                where.append((k, a, i, j))
        num_positive = max(len(pred_raw), 1)
        objectness = torch.cat([r[..., 4].flatten() for r in maps])
        is_positive = torch.cat([p.flatten() for p in positive])
        counted = is_positive | ~torch.cat([i.flatten() for i in ignore])
        loss_obj = F.binary_cross_entropy_with_logits(
            objectness[counted], is_positive[counted].to(objectness.dtype), reduction="sum") / num_positive
        if not pred_raw:
            zero = sum(r.sum() for r in maps) * 0.0
            return {"loss_box": zero, "loss_obj": self.lambda_obj * loss_obj, "loss_cls": zero}
        pred_raw, pred_box = torch.stack(pred_raw), torch.stack(pred_box)
        labels = torch.tensor(target_label, device=pred_raw.device)
        where = torch.tensor(where, device=pred_raw.device)
        loss_box = self._box_loss(pred_raw, pred_box, torch.stack(target_box), where, image_size).sum()
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
        error = (raw[:, :2].sigmoid() - centre).pow(2).sum(1) + (raw[:, 2:4] - (size / anchors).log()).pow(2).sum(1)
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


__all__ = ["YoloHead", "YoloOutput"]
