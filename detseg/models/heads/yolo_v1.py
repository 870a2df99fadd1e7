"""YOLO v1 (Redmon et al., CVPR 2016): one S x S grid, B boxes and C class probabilities
per cell, trained with a sum-squared loss.

Per cell the head outputs ``B * 5 + C`` numbers, read as (for each of the B predictors)
``x, y`` = the box centre inside the cell in ``[0, 1]``, ``sqrt(w), sqrt(h)`` = the square
roots of the box size relative to the image, ``confidence``; then C class probabilities.
We squash ``x, y, sqrt(w), sqrt(h), confidence`` with a sigmoid and the class scores with a
softmax, so every output lives where its target does (the paper uses a linear output
layer and lets the loss pull the values into range).

Loss per image, summed over cells (and averaged over the batch), with ``1_ij^obj`` for the
predictor ``j`` of cell ``i`` "responsible" for an object, i.e. the one whose current box
has the highest IoU with that object's box:

- ``loss_coord = lambda_coord * sum 1_ij^obj [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]``
- ``loss_obj = sum 1_ij^obj (C - IoU(box_ij, gt))^2``: the confidence learns the IoU;
- ``loss_noobj = lambda_noobj * sum 1_ij^noobj C^2``;
- ``loss_cls = sum_i 1_i^obj sum_c (p_i(c) - p^_i(c))^2``.

A cell holds one object: when several centres fall into the same cell, the largest wins.
Scores at inference are ``confidence * p(c)``, followed by per-class NMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import NonNegativeFloat, PositiveInt, UnitInterval
from detseg.errors import ConfigError
from detseg.models.backbones.base import FeatureSpec, select_features
from detseg.models.heads.base import DenseHead, ignore_boxes
from detseg.ops import aligned_box_iou, class_weight_vector
from detseg.ops.matcher import near_ignore_regions
from detseg.ops.postprocess import select_detections
from detseg.registry import DENSE_HEADS
from detseg.structures import DetSample, Instances


@dataclass
class GridTargets:
    """What one image asks of the grid.

    Attributes:
        has_object: ``bool[S, S]`` cells that hold an object's centre.
        box: ``float[S, S, 4]`` ``(x, y, sqrt w, sqrt h)`` of the cell's object (zeros elsewhere).
        box_xyxy: ``float[S, S, 4]`` the object's box in image pixels.
        classes: ``float[S, S, C]`` one-hot class of the cell's object.
    """

    has_object: Tensor
    box: Tensor
    box_xyxy: Tensor
    classes: Tensor


def build_grid_targets(boxes: Tensor, labels: Tensor, image_size: tuple[int, int], grid_size: int,
                       num_classes: int) -> GridTargets:
    """Assign each ground-truth box (``[N, 4]`` xyxy pixels) to the cell holding its centre."""
    s = grid_size
    h, w = image_size
    has_object = torch.zeros(s, s, dtype=torch.bool)
    box = torch.zeros(s, s, 4)
    box_xyxy = torch.zeros(s, s, 4)
    classes = torch.zeros(s, s, num_classes)
    boxes, labels = boxes.cpu().float(), labels.cpu()
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for k in areas.argsort(descending=True).tolist():  # the largest claims a shared cell first
        x1, y1, x2, y2 = boxes[k].tolist()
        cx, cy = (x1 + x2) / 2 / w * s, (y1 + y2) / 2 / h * s
        col, row = min(int(cx), s - 1), min(int(cy), s - 1)
        if has_object[row, col]:
            continue
        has_object[row, col] = True
        box[row, col] = torch.tensor([cx - col, cy - row, ((x2 - x1) / w) ** 0.5, ((y2 - y1) / h) ** 0.5])
        box_xyxy[row, col] = boxes[k]
        classes[row, col, labels[k]] = 1.0
    return GridTargets(has_object, box, box_xyxy, classes)


def decode_grid_boxes(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """``[..., S, S, B, 4]`` of ``(x, y, sqrt w, sqrt h)`` -> xyxy pixels, same shape."""
    s = boxes.shape[-3]
    h, w = image_size
    rows = torch.arange(s, device=boxes.device, dtype=boxes.dtype).view(s, 1, 1)
    cols = torch.arange(s, device=boxes.device, dtype=boxes.dtype).view(1, s, 1)
    cx = (boxes[..., 0] + cols) / s * w
    cy = (boxes[..., 1] + rows) / s * h
    bw, bh = boxes[..., 2] ** 2 * w, boxes[..., 3] ** 2 * h
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1)


def yolo_v1_loss(predictions: Tensor, targets: Sequence[GridTargets], image_size: tuple[int, int],
                 boxes_per_cell: int, lambda_coord: float = 5.0, lambda_noobj: float = 0.5,
                 class_weights: Tensor | None = None, ignored: Tensor | None = None) -> dict[str, Tensor]:
    """The four loss terms of the module docstring, averaged over the batch.

    Args:
        predictions: ``[N, S, S, B * 5 + C]`` after the output activations.
        targets: one :class:`GridTargets` per image.
        image_size: ``(height, width)`` of the (resized) input all boxes refer to.
        class_weights: ``[C + 1]`` (see :func:`~detseg.ops.losses.class_weight_vector`): a
            cell's class term is multiplied by the weight of its object's class.
        ignored: ``bool[N, S, S, B]`` predictors on crowd regions: no ``loss_noobj``.
    """
    n, s, _, _ = predictions.shape
    b = boxes_per_cell
    per_box = predictions[..., : 5 * b].reshape(n, s, s, b, 5)
    pred_box, pred_conf, pred_cls = per_box[..., :4], per_box[..., 4], predictions[..., 5 * b:]
    device = predictions.device
    has_object = torch.stack([t.has_object for t in targets]).to(device)
    target_box = torch.stack([t.box for t in targets]).to(device)
    target_xyxy = torch.stack([t.box_xyxy for t in targets]).to(device)
    target_cls = torch.stack([t.classes for t in targets]).to(device)

    with torch.no_grad():  # which predictor answers for the object, and the IoU it reaches
        pred_xyxy = decode_grid_boxes(pred_box.detach(), image_size)
        iou = aligned_box_iou(pred_xyxy, target_xyxy[..., None, :].expand_as(pred_xyxy))
        best = iou.argmax(-1)
        responsible = F.one_hot(best, b).bool() & has_object[..., None]

    coord = (pred_box - target_box[..., None, :]).pow(2).sum(-1)
    loss_coord = lambda_coord * coord[responsible].sum()
    loss_obj = (pred_conf - iou)[responsible].pow(2).sum()
    quiet = ~responsible if ignored is None else ~responsible & ~ignored.to(device)
    loss_noobj = lambda_noobj * pred_conf[quiet].pow(2).sum()
    class_terms = (pred_cls - target_cls).pow(2).sum(-1)
    if class_weights is not None:
        class_terms = class_terms * (target_cls * class_weights[:-1].to(target_cls)).sum(-1)
    loss_cls = class_terms[has_object].sum()
    return {"loss_coord": loss_coord / n, "loss_obj": loss_obj / n, "loss_noobj": loss_noobj / n,
            "loss_cls": loss_cls / n}


@dataclass
class YoloV1Output:
    """``grid[N, S, S, B * 5 + C]`` after the output activations, for an input of ``image_size``."""

    grid: Tensor
    image_size: tuple[int, int]


@DENSE_HEADS.register("yolo_v1")
class YoloV1Head(DenseHead):
    """The S x S x (B * 5 + C) predictor on one feature map.

    Args:
        input_shape: feature shapes (supplied by the model builder).
        model_input_size: the square side images are resized to (the detector's
            ``input_size``, supplied by the model builder).
        in_feature: the map to predict from; ``input_size / stride`` must equal ``grid_size``.
        num_classes: object classes. Supplied by the model builder
            (``model.num_classes``).
        grid_size: S (7 in the paper).
        boxes_per_cell: B (2 in the paper).
        head_type: ``fc`` (the paper: flatten -> FC -> dropout -> FC) or ``conv`` (3x3 conv
            -> 1x1 conv, fully convolutional).
        hidden_dim: width of the FC layer or the 3x3 conv.
        lambda_coord, lambda_noobj: loss weights (5 and 0.5).
        score_threshold, nms_threshold, detections_per_image: inference.
        class_weights: one weight per class for the classification loss of imbalanced data
            (see :func:`~detseg.ops.losses.class_weight_vector`).
    """

    def __init__(
        self,
        input_shape: dict[str, FeatureSpec],
        model_input_size: int,
        in_feature: str,
        num_classes: int,
        grid_size: PositiveInt = 7,
        boxes_per_cell: PositiveInt = 2,
        head_type: Literal["fc", "conv"] = "fc",
        hidden_dim: PositiveInt = 512,
        dropout: UnitInterval = 0.5,
        lambda_coord: NonNegativeFloat = 5.0,
        lambda_noobj: NonNegativeFloat = 0.5,
        score_threshold: UnitInterval = 0.05,
        nms_threshold: UnitInterval = 0.5,
        detections_per_image: PositiveInt = 100,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        spec = select_features(input_shape, [in_feature], "yolo_v1 head")[in_feature]
        input_size = model_input_size
        if input_size % spec.stride or input_size // spec.stride != grid_size:
            sizes = grid_size * spec.stride
            raise ConfigError(
                f"model.input_size {input_size} gives a {input_size / spec.stride:g} x "
                f"{input_size / spec.stride:g} map at {in_feature} (stride {spec.stride}), not the "
                f"{grid_size} x {grid_size} grid; use input_size {sizes} or grid_size {input_size // spec.stride} "
                f"with input_size {input_size // spec.stride * spec.stride}"
            )
        if head_type not in ("fc", "conv"):
            raise ConfigError(f"yolo_v1 head: head_type must be 'fc' or 'conv', got {head_type!r}")
        self.in_feature = in_feature
        self.num_classes = num_classes
        self.grid_size = grid_size
        self.boxes_per_cell = boxes_per_cell
        self.outputs_per_cell = boxes_per_cell * 5 + num_classes
        c = spec.channels
        if head_type == "fc":
            self.layers = nn.Sequential(
                nn.Flatten(), nn.Linear(c * grid_size * grid_size, hidden_dim), nn.LeakyReLU(0.1),
                nn.Dropout(dropout), nn.Linear(hidden_dim, grid_size * grid_size * self.outputs_per_cell))
        else:
            self.layers = nn.Sequential(
                nn.Conv2d(c, hidden_dim, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(hidden_dim, self.outputs_per_cell, 1))
        self.head_type = head_type
        self.lambda_coord = lambda_coord
        self.lambda_noobj = lambda_noobj
        self.register_buffer("class_weights", class_weight_vector(class_weights, num_classes, "yolo_v1 head"),
                             persistent=False)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.detections_per_image = detections_per_image

    def forward(self, features: dict[str, Tensor], image_size: tuple[int, int]) -> YoloV1Output:
        x = self.layers(features[self.in_feature])
        s = self.grid_size
        x = x.view(-1, s, s, self.outputs_per_cell) if self.head_type == "fc" else x.permute(0, 2, 3, 1)
        b5 = 5 * self.boxes_per_cell
        return YoloV1Output(torch.cat([x[..., :b5].sigmoid(), x[..., b5:].softmax(-1)], dim=-1), image_size)

    def loss(self, raw: YoloV1Output, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        image_size, grid = raw.image_size, raw.grid
        targets = [build_grid_targets(s.gt.boxes.tensor, s.gt.labels, image_size, self.grid_size, self.num_classes)
                   for s in samples]
        ignored = None
        if any(ignore_boxes(s) is not None for s in samples):  # predictors on crowd regions
            n, size, b = len(samples), self.grid_size, self.boxes_per_cell
            boxes = decode_grid_boxes(grid[..., : 5 * b].detach().reshape(n, size, size, b, 5)[..., :4], image_size)
            ignored = torch.stack([near_ignore_regions(boxes[i].reshape(-1, 4), ignore_boxes(s)).view(size, size, b)
                                   for i, s in enumerate(samples)])
        return yolo_v1_loss(grid, targets, image_size, self.boxes_per_cell, self.lambda_coord,
                            self.lambda_noobj, self.class_weights, ignored)

    @torch.no_grad()
    def predict(self, raw: YoloV1Output, samples: Sequence[DetSample]) -> list[Instances]:
        out, image_size = raw.grid, raw.image_size
        n, s = out.shape[:2]
        b = self.boxes_per_cell
        per_box = out[..., : 5 * b].reshape(n, s, s, b, 5)
        boxes = decode_grid_boxes(per_box[..., :4], image_size).reshape(n, -1, 4)
        # class-specific scores: confidence x class probability of the cell
        scores = (per_box[..., 4:5] * out[..., None, 5 * b:]).reshape(n, -1, self.num_classes)
        return [
            select_detections(boxes[i], scores[i], image_size,
                              self.score_threshold, self.nms_threshold, self.detections_per_image)
            for i in range(n)
        ]


__all__ = ["GridTargets", "YoloV1Head", "YoloV1Output", "build_grid_targets", "decode_grid_boxes", "yolo_v1_loss"]
