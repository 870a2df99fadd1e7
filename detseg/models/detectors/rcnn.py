"""R-CNN (Girshick et al., CVPR 2014): classify warped image crops of region proposals.

Per image: proposals -> each box widened by context padding and warped to
``crop_size x crop_size`` (one batched RoIAlign on the normalised image, which is a
bilinear warp; outside the image it reads the mean colour, as the paper pads) -> backbone
-> "pool5" (the last feature map, flattened) -> fc6 -> fc7 -> scores; class-specific box
regression on pool5.

Training, all inside the engine's iterations:

- fine-tuning: softmax over ``C + 1`` on fc7 with cross-entropy; RoIs with IoU >= 0.5 are
  positives, the rest background, 25% positives per sample (as the paper's 32 of 128);
- ``classifier: svm``: one-vs-rest linear SVMs on L2-normalised fc7 features (detached,
  so they do not change the network), hinge loss with an L2 penalty; positives are the ground-truth boxes,
  negatives proposals with IoU < 0.3 with every object of the class, of which only the
  hardest (highest-scoring) ``svm_negatives_per_positive`` per positive enter the loss:
  hard negative mining over a pool of ``svm_negative_pool`` per image. Inference then
  scores with the SVMs (``sigmoid(margin)``, which keeps their order);
- box regression: linear on detached, L2-normalised pool5 features, squared loss on the BoxCoder targets
  ``t_x, t_y, t_w, t_h`` of proposals with IoU >= 0.6, plus ``ridge_lambda * ||W||^2``:
  ridge regression solved by SGD alongside the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import (
    Component,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    UnitInterval,
    build,
)
from detseg.errors import ConfigError
from detseg.models.base import Detector
from detseg.models.build import require_num_classes
from detseg.models.heads.base import ProposalSource
from detseg.models.heads.roi_heads import RoISampler, TwoFCBoxHead
from detseg.models.preprocessor import IMAGENET_MEAN, IMAGENET_STD, Preprocessor, rescale_instances
from detseg.ops import (
    aligned_box_iou,
    box_iou,
    class_weight_vector,
    class_weighted_cross_entropy,
    roi_align,
)
from detseg.ops.postprocess import select_detections
from detseg.registry import BACKBONES, MODELS, PROPOSAL_SOURCES
from detseg.structures import BoxCoder, Boxes, DetSample, Instances


def context_boxes(boxes: Tensor, crop_size: int, context_padding: int) -> Tensor:
    """Widen xyxy ``boxes`` so that, warped to ``crop_size``, the original box spans
    ``crop_size - 2 * context_padding`` pixels with ``context_padding`` of context around
    it (the paper's p = 16 at 227)."""
    scale = crop_size / (crop_size - 2 * context_padding)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2)
    return torch.cat([centre - half, centre + half], dim=1)


@MODELS.register("rcnn")
class RCNN(Detector):
    """``loss(samples) -> dict`` of ``loss_*`` terms; ``predict(samples) -> list[Instances]``
    in each sample's original image coordinates. See the module docstring.

    ``proposal_source`` is ``selective_search`` or ``precomputed``. The backbone's last
    ``out_features`` map, max-pooled to a ``pool5_size`` grid when given (7 for VGG-16 at
    224), is pool5. ``crop_batch_size`` regions go through the backbone at once at inference.
    ``class_weights`` (one per class) weigh the fine-tuning and SVM losses of each class
    (see :func:`~detseg.ops.losses.class_weight_vector`).
    """


    def __init__(
        self,
        backbone: Component(BACKBONES),
        proposal_source: Component(PROPOSAL_SOURCES),
        num_classes: PositiveInt | None = None,
        crop_size: PositiveInt = 64,
        context_padding: NonNegativeInt = 4,
        fc_dim: PositiveInt = 256,
        classifier: Literal["softmax", "svm"] = "softmax",
        batch_size_per_image: PositiveInt = 64,
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
        crop_batch_size: PositiveInt = 256,
        pool5_size: int | None = None,
        pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
        pixel_std: tuple[float, float, float] = IMAGENET_STD,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        num_classes = require_num_classes(num_classes)
        if classifier not in ("softmax", "svm"):
            raise ConfigError(f"model.classifier must be 'softmax' or 'svm', got {classifier!r}")
        if not 0 <= 2 * context_padding < crop_size:
            raise ConfigError(f"model.context_padding {context_padding} leaves no box in a {crop_size} crop")
        self.preprocessor = Preprocessor(pixel_mean, pixel_std, 1)
        self.backbone = backbone = build(backbone, BACKBONES, "model.backbone")
        self.proposal_source: ProposalSource = build(proposal_source, PROPOSAL_SOURCES, "model.proposal_source",
                                                     input_shape={})
        self.num_classes = num_classes
        self.register_buffer("class_weights", class_weight_vector(class_weights, num_classes, "model"),
                             persistent=False)
        self.crop_size = crop_size
        self.context_padding = context_padding
        self.feature_name = list(backbone.output_shape())[-1]
        self.pool5_size = pool5_size
        was_training = backbone.training
        with torch.no_grad():  # pool5's size for this crop size, whatever the backbone's padding rules
            pool5_dim = self.pool5(backbone.eval()(torch.zeros(1, 3, crop_size, crop_size)))[0].numel()
        backbone.train(was_training)
        self.fc = TwoFCBoxHead(pool5_dim, fc_dim)
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)
        self.svm = nn.Linear(fc_dim, num_classes) if classifier == "svm" else None
        self.bbox_regressor = nn.Linear(pool5_dim, 4 * num_classes)
        for layer in (self.cls_score, self.bbox_regressor, *([self.svm] if self.svm is not None else [])):
            nn.init.normal_(layer.weight, std=0.001)
            nn.init.zeros_(layer.bias)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.roi_sampler = RoISampler(num_classes, self.box_coder, 0.5, batch_size_per_image, positive_fraction)
        self.regression_iou = regression_iou
        self.ridge_lambda = ridge_lambda
        self.svm_negative_iou = svm_negative_iou
        self.svm_negative_pool = svm_negative_pool
        self.svm_negatives_per_positive = svm_negatives_per_positive
        self.svm_l2 = svm_l2
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.detections_per_image = detections_per_image
        self.crop_batch_size = crop_batch_size

    @property
    def proposals_in_graph(self) -> bool:
        return False  # selective search or a proposal file

    def crops(self, images: Tensor, boxes: Sequence[Tensor]) -> Tensor:
        """``images[B, 3, H, W]`` normalised, ``boxes`` per image ``[K_i, 4]`` xyxy ->
        ``[sum K_i, 3, crop_size, crop_size]`` warped crops with context."""
        widened = [context_boxes(b, self.crop_size, self.context_padding) for b in boxes]
        return roi_align(images, widened, self.crop_size, 1.0, sampling_ratio=2, aligned=True)

    def pool5(self, features: dict[str, Tensor]) -> Tensor:
        """The backbone's last map, max-pooled to ``pool5_size`` when set, flattened: ``[K, D]``."""
        x = features[self.feature_name]
        if self.pool5_size is not None:
            x = F.adaptive_max_pool2d(x, self.pool5_size)
        return x.flatten(1)

    def region_features(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        """``crops[K, 3, S, S]`` -> ``(pool5[K, D], fc7[K, fc_dim])``."""
        pool5 = self.pool5(self.backbone(crops))
        return pool5, self.fc(pool5)

    def box_deltas(self, pool5: Tensor) -> Tensor:
        """Class-specific ``[K, 4C]`` deltas from L2-normalised pool5 features (unit norm keeps
        the SGD ridge regression stable; the paper rescales features for the same reason)."""
        return self.bbox_regressor(F.normalize(pool5, dim=1))

    def svm_scores(self, fc7: Tensor) -> Tensor:
        """``[K, C]`` SVM margins on L2-normalised fc7 features."""
        return self.svm(F.normalize(fc7, dim=1))

    def loss(self, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        batch = self.preprocessor(samples)
        proposals = self.proposal_source.predict(None, samples, training=True)
        sampled = self.roi_sampler(proposals, samples)
        rois, labels, targets, positive_gt = sampled.rois, sampled.labels, sampled.box_targets, sampled.positive_gt
        all_labels = torch.cat(labels)
        pool5, fc7 = self.region_features(self.crops(batch.tensor, rois))
        losses = {"loss_cls": class_weighted_cross_entropy(self.cls_score(fc7), all_labels, self.class_weights,
                                                           ignore_index=-100)}
        losses["loss_box"] = self._regression_loss(pool5.detach(), rois, all_labels, torch.cat(targets),
                                                   positive_gt, samples)
        if self.svm is not None:
            losses["loss_svm"] = self._svm_loss(batch.tensor, fc7.detach(), all_labels, proposals, samples)
        return losses

    def _regression_loss(self, pool5: Tensor, rois: Sequence[Tensor], labels: Tensor, targets: Tensor,
                         positive_gt: Sequence[Tensor], samples: Sequence[DetSample]) -> Tensor:
        """Ridge regression loss; ``rois`` per image with positives first (RoISampler's order)."""
        # only RoIs overlapping their own object well teach the regressor (the paper's IoU > 0.6)
        close = [aligned_box_iou(r[: len(m)], s.gt.boxes.tensor.to(r.device)[m]) >= self.regression_iou
                 for r, m, s in zip(rois, positive_gt, samples)]
        offsets = torch.tensor([0, *[len(r) for r in rois]]).cumsum(0)[:-1].tolist()
        foreground = torch.cat([start + torch.nonzero(c).flatten() for start, c in zip(offsets, close)])
        ridge = self.ridge_lambda * self.bbox_regressor.weight.pow(2).sum()
        if len(foreground) == 0:
            return ridge
        deltas = self.box_deltas(pool5[foreground]).view(-1, self.num_classes, 4)
        deltas = deltas[torch.arange(len(foreground)), labels[foreground]]
        return F.mse_loss(deltas, targets[foreground], reduction="sum") / len(foreground) + ridge

    def _svm_loss(self, images: Tensor, fc7: Tensor, labels: Tensor, proposals: Sequence[Instances],
                  samples: Sequence[DetSample]) -> Tensor:
        """Hinge loss of the one-vs-rest SVMs with hard negative mining (module docstring)."""
        device = images.device
        gt_boxes = [s.gt.boxes.tensor.to(device) for s in samples]
        gt_labels = [s.gt.labels.to(device) for s in samples]
        pool = []
        for props in proposals:
            candidates = props.boxes.tensor
            order = torch.randperm(len(candidates), device=device)[: self.svm_negative_pool]
            pool.append(candidates[order])
        with torch.no_grad():
            positive_features = self.region_features(self.crops(images, gt_boxes))[1] \
                if sum(len(b) for b in gt_boxes) else fc7.new_zeros((0, fc7.shape[1]))
            pool_features = self.region_features(self.crops(images, pool))[1] \
                if sum(len(p) for p in pool) else fc7.new_zeros((0, fc7.shape[1]))
        positive_labels = torch.cat(gt_labels)
        # IoU of each pool box with the objects of each class -> negatives per class
        pool_iou = torch.zeros(len(pool_features), self.num_classes, device=device)
        start = 0
        for boxes, lab, candidates in zip(gt_boxes, gt_labels, pool):
            if len(boxes) and len(candidates):
                iou = box_iou(candidates, boxes)
                for c in lab.unique().tolist():
                    pool_iou[start:start + len(candidates), c] = iou[:, lab == c].amax(1)
            start += len(candidates)
        positive_scores = self.svm_scores(positive_features)
        pool_scores = self.svm_scores(pool_features)
        total, count = pool_scores.new_zeros(()), 0
        for c in range(self.num_classes):
            pos = positive_scores[positive_labels == c, c]
            negatives = pool_scores[pool_iou[:, c] < self.svm_negative_iou, c]
            k = min(len(negatives), self.svm_negatives_per_positive * max(len(pos), 1))
            hardest = negatives.topk(k).values
            weight = 1.0 if self.class_weights is None else self.class_weights[c]
            total = total + weight * (F.relu(1 - pos).sum() + F.relu(1 + hardest).sum())
            count += len(pos) + k
        return total / max(count, 1) + self.svm_l2 * self.svm.weight.pow(2).sum()

    @torch.no_grad()
    def predict(self, samples: Sequence[DetSample]) -> list[Instances]:
        batch = self.preprocessor(samples)
        proposals = self.proposal_source.predict(None, samples)
        results = []
        for i, (props, sample) in enumerate(zip(proposals, samples)):
            boxes = props.boxes.tensor
            scores, deltas = [], []
            for chunk in boxes.split(self.crop_batch_size):
                pool5, fc7 = self.region_features(self.crops(batch.tensor[i:i + 1], [chunk]))
                if self.svm is not None:
                    scores.append(self.svm_scores(fc7).sigmoid())
                else:
                    scores.append(self.cls_score(fc7).softmax(-1)[:, : self.num_classes])
                deltas.append(self.box_deltas(pool5))
            n = len(boxes)
            if n == 0:
                detections = Instances(Boxes(boxes), torch.zeros(0, dtype=torch.int64, device=boxes.device),
                                       props.image_size, scores=boxes.new_zeros(0))
            else:
                decoded = self.box_coder.decode(torch.cat(deltas), boxes).view(n, self.num_classes, 4)
                detections = select_detections(decoded, torch.cat(scores), props.image_size, self.score_threshold,
                                               self.nms_threshold, self.detections_per_image)
            results.append(rescale_instances(detections.to("cpu"), sample.orig_size))
        return results
