"""R-CNN's RoI head (Girshick et al., CVPR 2014): fc6 -> fc7 -> scores on each region's
"pool5", a softmax or one-vs-rest SVMs, and ridge box regression on pool5.

The region features come from any extractor (:mod:`~detseg.models.heads.region_features`):
``crop_warp`` is R-CNN itself (warped image crops through the whole CNN); ``spp`` or
``roi_pool`` with ``classifier: svm`` is SPP-net's design (SVMs on pooled shared features).

Training, all inside the engine's iterations:

- fine-tuning: softmax over ``C + 1`` on fc7 with cross-entropy; RoIs with IoU >= 0.5 are
  positives, the rest background, 25% positives per sample (as the paper's 32 of 128);
- ``classifier: svm``: one-vs-rest linear SVMs on L2-normalised fc7 features (detached,
  so they do not change the network), hinge loss with an L2 penalty; positives are the
  ground-truth boxes, negatives proposals with IoU < 0.3 with every object of the class, of
  which only the hardest (highest-scoring) ``svm_negatives_per_positive`` per positive enter
  the loss: hard negative mining over a pool of ``svm_negative_pool`` per image. Inference
  then scores with the SVMs (``sigmoid(margin)``, which keeps their order);
- box regression: linear on detached, L2-normalised pool5 features, squared loss on the
  BoxCoder targets ``t_x, t_y, t_w, t_h`` of proposals with IoU >= 0.6, plus
  ``ridge_lambda * ||W||^2``: ridge regression solved by SGD alongside the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import NonNegativeFloat, NonNegativeInt, PositiveInt, UnitInterval
from detseg.errors import ConfigError
from detseg.models.backbones.base import FeatureSpec
from detseg.models.heads.base import RoIHead
from detseg.models.heads.region_features import (
    CropConfig,
    ImageFeatures,
    PoolerKind,
    build_region_extractor,
    extract_regions,
)
from detseg.models.heads.roi_heads import RoIHeadOutput, RoISampler, TwoFCBoxHead, select_per_image
from detseg.models.preprocessor import rescale_instances
from detseg.ops import aligned_box_iou, box_iou, class_weight_vector, class_weighted_cross_entropy
from detseg.registry import ROI_HEADS
from detseg.structures import BoxCoder, DetSample, Instances


@dataclass
class SVMBatch:
    """What the SVM loss reads, computed in the forward pass: the SVM margins ``[P, C]`` of
    the ground-truth boxes with their ``positive_labels[P]``, and of a random pool of
    proposals ``pool_margins[Q, C]`` with each pool box's best IoU with the objects of each
    class, ``pool_iou[Q, C]``."""

    positive_margins: Tensor
    positive_labels: Tensor
    pool_margins: Tensor
    pool_iou: Tensor


@dataclass
class RCNNHeadOutput(RoIHeadOutput):
    """:class:`RoIHeadOutput` plus the SVM margins of the RoIs ``[sum K_i, C]`` (with
    ``classifier: svm``) and, in training, the SVM's :class:`SVMBatch`."""

    svm_margins: Tensor | None = None
    svm_batch: SVMBatch | None = None


@ROI_HEADS.register("rcnn")
class RCNNRoIHead(RoIHead):
    """See the module docstring. Labels are ``0..C-1`` for classes and ``C`` for background.

    Args:
        input_shape, in_features, num_classes, pooler, pool_size, sampling_ratio, aligned,
            crop: as :class:`~detseg.models.heads.roi_heads.StandardRoIHead`; ``pool_size`` is
            pool5's grid (7 for VGG-16 at 224).
        fc_dim: width of fc6 and fc7.
        classifier: ``softmax`` (the fine-tuned network's scores) or ``svm``.
        class_weights: one weight per class for the fine-tuning and SVM losses (see
            :func:`~detseg.ops.losses.class_weight_vector`).
    """

    def __init__(
        self,
        input_shape: dict[str, FeatureSpec],
        in_features: Sequence[str],
        num_classes: int,
        pooler: PoolerKind = "crop_warp",
        pool_size: PositiveInt = 7,
        sampling_ratio: NonNegativeInt = 0,
        aligned: bool = True,
        crop: CropConfig | None = None,
        fc_dim: PositiveInt = 4096,
        classifier: Literal["softmax", "svm"] = "softmax",
        iou_threshold: UnitInterval = 0.5,
        batch_size_per_image: PositiveInt = 128,
        positive_fraction: UnitInterval = 0.25,
        regression_iou: UnitInterval = 0.6,
        ridge_lambda: NonNegativeFloat = 1e-3,
        svm_negative_iou: UnitInterval = 0.3,
        svm_negative_pool: PositiveInt = 64,
        svm_negatives_per_positive: PositiveInt = 3,
        svm_l2: NonNegativeFloat = 1e-4,
        score_threshold: UnitInterval = 0.05,
        nms_threshold: UnitInterval = 0.3,
        detections_per_image: PositiveInt = 100,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if classifier not in ("softmax", "svm"):
            raise ConfigError(f"roi_head.classifier must be 'softmax' or 'svm', got {classifier!r}")
        self.in_features = list(in_features)
        self.num_classes = num_classes
        self.pooler, channels = build_region_extractor(pooler, input_shape, in_features, pool_size, sampling_ratio,
                                                       aligned, crop)
        pool5_dim = self.pooler.output_size_of(channels)
        self.box_head = TwoFCBoxHead(pool5_dim, fc_dim)
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)
        self.svm = nn.Linear(fc_dim, num_classes) if classifier == "svm" else None
        self.bbox_regressor = nn.Linear(pool5_dim, 4 * num_classes)
        for layer in (self.cls_score, self.bbox_regressor, *([self.svm] if self.svm is not None else [])):
            nn.init.normal_(layer.weight, std=0.001)
            nn.init.zeros_(layer.bias)
        self.register_buffer("class_weights", class_weight_vector(class_weights, num_classes, "roi_head"),
                             persistent=False)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.roi_sampler = RoISampler(num_classes, self.box_coder, iou_threshold, batch_size_per_image,
                                      positive_fraction)
        self.regression_iou = regression_iou
        self.ridge_lambda = ridge_lambda
        self.svm_negative_iou = svm_negative_iou
        self.svm_negative_pool = svm_negative_pool
        self.svm_negatives_per_positive = svm_negatives_per_positive
        self.svm_l2 = svm_l2
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.detections_per_image = detections_per_image

    @property
    def reads_image(self) -> bool:
        return self.pooler.reads_image

    def region_features(self, features: dict[str, Tensor] | ImageFeatures,
                        boxes: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Per-image ``boxes`` -> ``(pool5[K, D], fc7[K, fc_dim])``."""
        pool5 = extract_regions(self.pooler, features, self.in_features, boxes).flatten(1)
        return pool5, self.box_head(pool5)

    def svm_margins(self, fc7: Tensor) -> Tensor:
        """``[K, C]`` SVM margins on L2-normalised fc7 features."""
        return self.svm(F.normalize(fc7, dim=1))

    def forward(self, features: dict[str, Tensor] | ImageFeatures, proposals: Sequence[Instances],
                samples: Sequence[DetSample] | None = None) -> RCNNHeadOutput:
        """Score and refine ``proposals``; given the ``samples`` (training), first sample RoIs
        among proposals + ground truth, and compute the SVM's inputs."""
        targets = None
        if samples is None:
            rois = [p.boxes.tensor for p in proposals]
        else:
            targets = self.roi_sampler(proposals, samples)
            rois = targets.rois
        pool5, fc7 = self.region_features(features, rois)
        # unit norm keeps the SGD ridge regression stable; the paper rescales features for the same reason
        deltas = self.bbox_regressor(F.normalize(pool5.detach(), dim=1))
        raw = RCNNHeadOutput(rois, [p.image_size for p in proposals], self.cls_score(fc7), deltas, [], targets)
        if self.svm is not None:
            if samples is None:
                raw.svm_margins = self.svm_margins(fc7)
            else:
                raw.svm_batch = self._svm_batch(features, proposals, samples, fc7)
        return raw

    def _svm_batch(self, features: dict[str, Tensor] | ImageFeatures, proposals: Sequence[Instances],
                   samples: Sequence[DetSample], fc7: Tensor) -> SVMBatch:
        """The SVM's positives (ground-truth boxes) and pool of negative candidates, with
        their margins (module docstring)."""
        device = fc7.device
        gt_boxes = [s.gt.boxes.tensor.to(device) for s in samples]
        gt_labels = [s.gt.labels.to(device) for s in samples]
        pool = []
        for props in proposals:
            candidates = props.boxes.tensor
            pool.append(candidates[torch.randperm(len(candidates), device=device)[: self.svm_negative_pool]])
        empty = fc7.new_zeros((0, fc7.shape[1]))
        with torch.no_grad():
            positive_features = self.region_features(features, gt_boxes)[1] if sum(map(len, gt_boxes)) else empty
            pool_features = self.region_features(features, pool)[1] if sum(map(len, pool)) else empty
        pool_iou = torch.zeros(len(pool_features), self.num_classes, device=device)
        start = 0
        for boxes, labels, candidates in zip(gt_boxes, gt_labels, pool):
            if len(boxes) and len(candidates):
                iou = box_iou(candidates, boxes)
                for c in labels.unique().tolist():
                    pool_iou[start:start + len(candidates), c] = iou[:, labels == c].amax(1)
            start += len(candidates)
        return SVMBatch(self.svm_margins(positive_features), torch.cat(gt_labels), self.svm_margins(pool_features),
                        pool_iou)

    def loss(self, raw: RCNNHeadOutput, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        """Fine-tuning cross-entropy, the ridge regression and, with SVMs, their hinge loss."""
        t = raw.targets
        labels = torch.cat(t.labels)
        losses = {"loss_cls": class_weighted_cross_entropy(raw.class_logits, labels, self.class_weights,
                                                          ignore_index=-100),
                  "loss_box": self._regression_loss(raw.box_deltas, labels, samples, t.rois, t.positive_gt,
                                                    torch.cat(t.box_targets))}
        if raw.svm_batch is not None:
            losses["loss_svm"] = self._svm_loss(raw.svm_batch)
        return losses

    def _regression_loss(self, deltas: Tensor, labels: Tensor, samples: Sequence[DetSample], rois: Sequence[Tensor],
                         positive_gt: Sequence[Tensor], targets: Tensor) -> Tensor:
        """Ridge regression loss; ``rois`` per image with positives first (RoISampler's order)."""
        # only RoIs overlapping their own object well teach the regressor (the paper's IoU > 0.6)
        close = [aligned_box_iou(r[: len(m)], s.gt.boxes.tensor.to(r.device)[m]) >= self.regression_iou
                 for r, m, s in zip(rois, positive_gt, samples)]
        offsets = torch.tensor([0, *[len(r) for r in rois]]).cumsum(0)[:-1].tolist()
        foreground = torch.cat([start + torch.nonzero(c).flatten() for start, c in zip(offsets, close)])
        ridge = self.ridge_lambda * self.bbox_regressor.weight.pow(2).sum()
        if len(foreground) == 0:
            return ridge
        chosen = deltas[foreground].view(-1, self.num_classes, 4)[torch.arange(len(foreground)), labels[foreground]]
        return F.mse_loss(chosen, targets[foreground], reduction="sum") / len(foreground) + ridge

    def _svm_loss(self, batch: SVMBatch) -> Tensor:
        """Hinge loss of the one-vs-rest SVMs with hard negative mining (module docstring)."""
        total, count = batch.pool_margins.new_zeros(()), 0
        for c in range(self.num_classes):
            positives = batch.positive_margins[batch.positive_labels == c, c]
            negatives = batch.pool_margins[batch.pool_iou[:, c] < self.svm_negative_iou, c]
            k = min(len(negatives), self.svm_negatives_per_positive * max(len(positives), 1))
            hardest = negatives.topk(k).values
            weight = 1.0 if self.class_weights is None else self.class_weights[c]
            total = total + weight * (F.relu(1 - positives).sum() + F.relu(1 + hardest).sum())
            count += len(positives) + k
        return total / max(count, 1) + self.svm_l2 * self.svm.weight.pow(2).sum()

    @torch.no_grad()
    def predict(self, raw: RCNNHeadOutput, samples: Sequence[DetSample],
                output_sizes: Sequence[tuple[int, int]] | None = None) -> list[Instances]:
        """Scores (SVM or softmax), class-specific boxes, threshold, per-class NMS, top k;
        at ``output_sizes`` (each original image's) when given."""
        if raw.svm_margins is not None:
            scores = raw.svm_margins.sigmoid()
        else:
            scores = raw.class_logits.softmax(-1)[:, : self.num_classes]
        results = select_per_image(raw, scores, self.box_coder, self.score_threshold, self.nms_threshold,
                                   self.detections_per_image)
        if output_sizes is None:
            return results
        return [rescale_instances(r, size) for r, size in zip(results, output_sizes)]


__all__ = ["RCNNHeadOutput", "RCNNRoIHead", "SVMBatch"]
