"""SSD's head (Liu et al., ECCV 2016): per feature map, 3x3 convolutions that score every
default box for C + 1 classes and regress its offsets.

Training, per image:

- **matching**: each ground truth takes the default box of highest IoU, and every default
  box with IoU >= 0.5 with some ground truth is also positive (for the best of them);
- ``loss_box``: smooth-L1 over positives between predicted and encoded offsets, with
  ``variances`` (0.1, 0.1, 0.2, 0.2), i.e. the box coder's weights (10, 10, 5, 5);
- ``loss_cls``: softmax cross-entropy over positives and the **hard negatives**: of the
  unmatched boxes, the ``neg_pos_ratio`` (3) per positive with the highest background loss.

Both sums are divided by the number of positives in the batch (1 when there is none).
An image without objects keeps ``neg_pos_ratio`` hard negatives, as if it had one positive,
so that it still teaches the background class.

Labels are ``0..C-1`` for the classes and ``C`` for background.

SSDLite (Sandler et al. 2018, section 6.2) makes each predictor depthwise-separable: a 3x3
depthwise convolution with BatchNorm and ReLU6, then a 1x1 convolution (``separable``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from detseg.config import PositiveFloat, PositiveInt, UnitInterval
from detseg.models.backbones.base import FeatureSpec, select_features
from detseg.models.heads.base import DenseHead, ignore_boxes
from detseg.ops import Matcher, box_iou, class_weight_vector, smooth_l1_loss
from detseg.ops.default_boxes import DefaultBoxGenerator
from detseg.ops.matcher import IGNORE, POSITIVE, ignore_near_regions
from detseg.ops.postprocess import select_detections
from detseg.ops.sampler import hard_negative_mining
from detseg.registry import DENSE_HEADS
from detseg.structures import DetSample, Instances
from detseg.structures.box_coder import BoxCoder


@dataclass
class SSDOutput:
    """``class_logits[N, P, C + 1]`` (background last) and ``box_offsets[N, P, 4]`` of the
    ``priors[P, 4]`` (xyxy input pixels) laid on an input of ``image_size``."""

    class_logits: Tensor
    box_offsets: Tensor
    priors: Tensor
    image_size: tuple[int, int]


@DENSE_HEADS.register("ssd")
class SSDHead(DenseHead):
    """Class scores and box offsets for every default box of every map.

    Args:
        input_shape: feature shapes (supplied by the model builder).
        model_input_size: the input side the default boxes' scales are fractions of: the
            square input's side, or the longest side of an aspect-kept resize (supplied by the
            model builder). A ratio-1 box is a square of ``s_k`` times it in pixels, whatever
            shape the batch is padded to.
        in_features: maps to predict from, finest first.
        num_classes: object classes, without background. Supplied by the model builder
            (``model.num_classes``).
        aspect_ratios, min_scale, max_scale, scales, steps, clip: the default boxes (see
            :class:`~detseg.ops.default_boxes.DefaultBoxGenerator`).
        iou_threshold: default boxes at or above this IoU are positive (0.5).
        neg_pos_ratio: hard negatives kept per positive (3).
        variances: centre and size variances of the box encoding (0.1, 0.2).
        score_threshold, nms_threshold, candidates_per_class, detections_per_image:
            inference (0.01, 0.45, 400 and 200, as the reference implementation).
        class_weights: one weight per class for the classification loss of imbalanced data
            (see :func:`~detseg.ops.losses.class_weight_vector`).
        separable: SSDLite's predictors (BatchNorm eps 0.001, momentum 0.03, and weights
            drawn from N(0, 0.03) as torchvision's) instead of 3x3 convolutions (Xavier).
    """

    def __init__(
        self,
        input_shape: dict[str, FeatureSpec],
        model_input_size: int,
        in_features: Sequence[str],
        num_classes: int,
        aspect_ratios: Sequence[Sequence[float]],
        min_scale: float = 0.2,
        max_scale: float = 0.9,
        scales: Sequence[float] | None = None,
        steps: Sequence[float] | None = None,
        clip: bool | Literal["sizes"] = True,
        iou_threshold: UnitInterval = 0.5,
        neg_pos_ratio: PositiveFloat = 3.0,
        variances: tuple[float, float] = (0.1, 0.2),
        score_threshold: UnitInterval = 0.01,
        nms_threshold: UnitInterval = 0.45,
        candidates_per_class: PositiveInt = 400,
        detections_per_image: PositiveInt = 200,
        class_weights: Sequence[float] | None = None,
        separable: bool = False,
    ) -> None:
        super().__init__()
        specs = select_features(input_shape, list(in_features), "ssd head")
        if len(aspect_ratios) != len(in_features):
            raise ValueError(f"ssd head: {len(in_features)} in_features but {len(aspect_ratios)} aspect_ratios lists")
        self.in_features = list(in_features)
        self.num_classes = num_classes
        self.default_boxes = DefaultBoxGenerator(aspect_ratios, min_scale, max_scale, scales, steps, clip)
        self.box_side = float(model_input_size)
        boxes_per_cell = self.default_boxes.num_boxes_per_cell
        self.classifiers = nn.ModuleList(_predictor(specs[n].channels, a * (num_classes + 1), separable)
                                         for n, a in zip(in_features, boxes_per_cell))
        self.regressors = nn.ModuleList(_predictor(specs[n].channels, a * 4, separable)
                                        for n, a in zip(in_features, boxes_per_cell))
        for conv in [*self.classifiers.modules(), *self.regressors.modules()]:
            if not isinstance(conv, nn.Conv2d):
                continue
            if separable:
                nn.init.normal_(conv.weight, std=0.03)
            else:
                nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        self.matcher = Matcher(iou_threshold, iou_threshold, allow_low_quality_matches=True)
        center_variance, size_variance = variances
        self.box_coder = BoxCoder((1 / center_variance, 1 / center_variance, 1 / size_variance, 1 / size_variance))
        self.neg_pos_ratio = neg_pos_ratio
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.candidates_per_class = candidates_per_class
        self.detections_per_image = detections_per_image
        self.register_buffer("class_weights", class_weight_vector(class_weights, num_classes, "ssd head"),
                             persistent=False)

    def forward(self, features: dict[str, Tensor], image_size: tuple[int, int]) -> SSDOutput:
        """Scores and offsets of every default box, ordered (map, row, column, box)."""
        logits, offsets, sizes = [], [], []
        for name, classifier, regressor in zip(self.in_features, self.classifiers, self.regressors):
            x = features[name]
            n = x.shape[0]
            logits.append(classifier(x).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes + 1))
            offsets.append(regressor(x).permute(0, 2, 3, 1).reshape(n, -1, 4))
            sizes.append(tuple(x.shape[-2:]))
        priors = self.default_boxes(sizes, image_size, logits[0].device, self.box_side)
        return SSDOutput(torch.cat(logits, 1), torch.cat(offsets, 1), priors, image_size)

    def loss(self, raw: SSDOutput, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        logits, offsets, priors = raw.class_logits, raw.box_offsets, raw.priors
        labels, box_targets, ignored = [], [], []
        for sample in samples:
            g = sample.gt
            match = self.matcher(box_iou(g.boxes.tensor.to(priors), priors))
            positive = match.labels == POSITIVE
            label = torch.full((len(priors),), self.num_classes, dtype=torch.int64, device=priors.device)
            label[positive] = g.labels.to(priors.device)[match.matched_gt[positive]]
            labels.append(label)
            ignored.append(ignore_near_regions(match.labels, priors, ignore_boxes(sample)) == IGNORE)
            matched = g.boxes.tensor.to(priors)[match.matched_gt] if len(g) else priors
            box_targets.append(self.box_coder.encode(priors, matched))
        labels, box_targets, ignored = torch.stack(labels), torch.stack(box_targets), torch.stack(ignored)
        positive = labels < self.num_classes
        num_positive = max(int(positive.sum()), 1)

        ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
        background_loss = ce.detach().masked_fill(positive, 0.0)  # CE against background = CE of negatives
        negatives = hard_negative_mining(background_loss, positive, self.neg_pos_ratio,
                                         min_negatives=int(self.neg_pos_ratio), ignored=ignored)
        if self.class_weights is not None:  # after the mining, which ranks background terms only
            ce = ce * self.class_weights.to(ce)[labels]
        loss_cls = ce[positive | negatives].sum() / num_positive
        loss_box = smooth_l1_loss(offsets[positive], box_targets[positive], beta=1.0, reduction="sum") / num_positive
        return {"loss_cls": loss_cls, "loss_box": loss_box}

    @torch.no_grad()
    def predict(self, raw: SSDOutput, samples: Sequence[DetSample]) -> list[Instances]:
        scores = raw.class_logits.softmax(-1)[..., : self.num_classes]
        return [
            select_detections(self.box_coder.decode(raw.box_offsets[i], raw.priors), scores[i], raw.image_size,
                              self.score_threshold, self.nms_threshold, self.detections_per_image,
                              self.candidates_per_class)
            for i in range(len(scores))
        ]


def _predictor(in_channels: int, out_channels: int, separable: bool) -> nn.Module:
    """A 3x3 convolution, or SSDLite's depthwise 3x3 (+ BN + ReLU6) then 1x1."""
    if not separable:
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, 3, groups=in_channels, norm_layer=norm,
                             activation_layer=nn.ReLU6),
        nn.Conv2d(in_channels, out_channels, 1),
    )


__all__ = ["SSDHead", "SSDOutput"]
