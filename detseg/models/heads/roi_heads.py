"""The R-CNN RoI head: pool features per region, classify, refine the box."""

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
from detseg.models.heads.base import RoIHead, ignore_boxes
from detseg.models.heads.mask_head import MaskBranch, MaskHeadConfig
from detseg.models.heads.region_features import (
    CropConfig,
    ImageFeatures,
    PoolerKind,
    RoIPooler,
    build_region_extractor,
    extract_regions,
)
from detseg.models.preprocessor import rescale_instances
from detseg.ops import (
    BalancedSampler,
    Matcher,
    box_iou,
    class_weight_vector,
    class_weighted_cross_entropy,
    smooth_l1_loss,
)
from detseg.ops.cpu_features import bf16_units
from detseg.ops.matcher import ignore_near_regions
from detseg.ops.postprocess import select_detections
from detseg.registry import ROI_HEADS
from detseg.structures import BoxCoder, DetSample, Instances


class TwoFCBoxHead(nn.Module):
    """Flatten the pooled features (``in_dim`` numbers per RoI) and apply two fully
    connected layers with ReLU."""

    def __init__(self, in_dim: int, fc_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))


class ConvFCBoxHead(nn.Module):
    """3x3 convolutions (+ BatchNorm) + ReLU on the pooled ``[K, C, S, S]`` features, then
    flattened through fully connected layers with ReLU (torchvision's ``FastRCNNConvFCHead``,
    the v2 models' 4 convs + 1 FC)."""

    def __init__(self, in_channels: int, pool_size: int, conv_dims: Sequence[int], fc_dims: Sequence[int],
                 norm: bool = False) -> None:
        super().__init__()
        convs = []
        for dim in conv_dims:
            conv = nn.Conv2d(in_channels, dim, 3, padding=1, bias=not norm)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            convs.append(nn.Sequential(conv, nn.BatchNorm2d(dim), nn.ReLU()) if norm else nn.Sequential(conv, nn.ReLU()))
            in_channels = dim
        self.convs = nn.Sequential(*convs)
        dims = [in_channels * pool_size * pool_size, *fc_dims]
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x).flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return x


class BoxPredictor(nn.Module):
    """Class scores over ``C + 1`` (background last) and class-specific deltas ``[N, 4C]``."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


@dataclass
class RoITargets:
    """The RoIs sampled for training, per image: ``rois[K_i, 4]`` xyxy (positives first),
    ``labels[K_i]`` (background = ``num_classes``), ``box_targets[K_i, 4]`` encoded by the
    box coder (zeros for background), and ``positive_gt`` (for each positive, the index of
    its ground truth)."""

    rois: list[Tensor]
    labels: list[Tensor]
    box_targets: list[Tensor]
    positive_gt: list[Tensor]


class RoISampler:
    """Fast R-CNN's RoI sampling: per image, proposals + ground truth, matched at
    ``iou_threshold``, sampled to ``batch_size_per_image`` with at most
    ``positive_fraction`` foreground. Proposals on a crowd region (``gt_ignore``) are
    never sampled as background."""

    def __init__(self, num_classes: int, box_coder: BoxCoder, iou_threshold: float = 0.5,
                 batch_size_per_image: int = 512, positive_fraction: float = 0.25) -> None:
        self.num_classes = num_classes
        self.box_coder = box_coder
        self.matcher = Matcher(iou_threshold, iou_threshold)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)

    @torch.no_grad()
    def __call__(self, proposals: Sequence[Instances], samples: Sequence[DetSample]) -> RoITargets:
        rois, labels, targets, positive_gt = [], [], [], []
        for props, sample in zip(proposals, samples):
            device = props.boxes.device
            gt = sample.gt.to(device)
            candidates = torch.cat([props.boxes.tensor, gt.boxes.tensor])
            match = self.matcher(box_iou(gt.boxes.tensor, candidates))
            pos, neg = self.sampler(ignore_near_regions(match.labels, candidates, ignore_boxes(sample)))
            index = torch.cat([pos, neg])
            label = torch.full((len(index),), self.num_classes, dtype=torch.int64, device=device)
            matched = match.matched_gt[pos]
            label[: len(pos)] = gt.labels[matched]
            target = torch.zeros(len(index), 4, device=device)
            if len(pos):
                target[: len(pos)] = self.box_coder.encode(candidates[pos], gt.boxes.tensor[matched])
            rois.append(candidates[index])
            labels.append(label)
            targets.append(target)
            positive_gt.append(matched)
        return RoITargets(rois, labels, targets, positive_gt)


@dataclass
class RoIHeadOutput:
    """The RoI head's raw outputs for ``rois`` (per image ``[K_i, 4]`` xyxy):
    ``class_logits[sum K_i, C + 1]`` (background last) and ``box_deltas[sum K_i, 4C]``.

    Training adds the sampled ``targets`` and, with a mask branch, ``mask_logits`` of the
    positives. ``maps`` are the pooled-from feature maps, which the mask branch reads again
    for the final detections."""

    rois: list[Tensor]
    image_sizes: list[tuple[int, int]]
    class_logits: Tensor
    box_deltas: Tensor
    maps: list[Tensor]
    targets: RoITargets | None = None
    mask_logits: Tensor | None = None


@ROI_HEADS.register("standard")
class StandardRoIHead(RoIHead):
    """Fast R-CNN's head on given proposals: pooler -> 2FC -> scores + class deltas.

    Labels are ``0..C-1`` for classes and ``C`` for background.

    Args:
        input_shape: feature shapes (supplied by the model builder).
        in_features: levels to pool from, finest first.
        num_classes: object classes, without background. Supplied by the model builder
            (``model.num_classes``).
        pooler: ``roi_align``, ``roi_pool`` or ``spp`` (see :class:`RoIPooler`) from the feature
            maps, or ``crop_warp`` (R-CNN's warped image crops through the trunk, :class:`CropWarp`).
        pool_size: side of the pooled grid.
        sampling_ratio: RoIAlign sample points per bin side (0: adaptive).
        fc_dim: width of the two FC layers.
        iou_threshold: proposals with IoU >= this are foreground (0.5).
        batch_size_per_image: RoIs sampled per image (512).
        positive_fraction: foreground share of the sample (0.25).
        box_coder_weights: (10, 10, 5, 5) as in Fast R-CNN.
        score_threshold: detections below this score are dropped at inference.
        nms_threshold: per-class NMS IoU at inference.
        detections_per_image: top-k kept at inference.
        smooth_l1_beta: of the box loss (0 = L1).
        mask_head: adds Mask R-CNN's mask branch (see :class:`MaskHeadConfig`).
        class_weights: one weight per class for the classification loss of imbalanced data
            (see :func:`~detseg.ops.losses.class_weight_vector`).
        conv_dims: 3x3 convolutions before the FC layers (torchvision v2: four of 256); with
            them, or with ``num_fcs`` other than 2, the box head is a :class:`ConvFCBoxHead`.
        num_fcs: FC layers of ``fc_dim`` in the box head.
        norm: BatchNorm after the box head's convolutions.
        aligned: RoIAlign's half-pixel correction, for boxes and masks (False in torchvision's zoo).
        min_box_size: detections not wider and taller than this (pixels) are dropped
            (torchvision: 0.01).
        crop: the crop size and context of ``pooler: crop_warp`` (see :class:`CropConfig`).
        fc_precision: the box head's arithmetic in training: ``fp32``; ``bf16`` (autocast: its
            matrix products in bf16, the weights, their gradients and the box predictor in
            fp32); ``auto``: bf16 on a CPU with bf16 units (``avx512_bf16`` / ``amx_bf16``),
            fp32 elsewhere. Inference is fp32 either way. On a 2-core AMD EPYC (avx512_bf16)
            bf16 takes the tiny Faster R-CNN's training step at 256 RoIs per image to ~0.67x
            (the 2048 x 3136 -> 256 layer dominates it; bench/README.md).
    """

    def __init__(
        self,
        input_shape: dict[str, FeatureSpec],
        in_features: Sequence[str],
        num_classes: int,
        pooler: PoolerKind = "roi_align",
        pool_size: PositiveInt = 7,
        sampling_ratio: NonNegativeInt = 0,
        fc_dim: PositiveInt = 1024,
        iou_threshold: UnitInterval = 0.5,
        batch_size_per_image: PositiveInt = 512,
        positive_fraction: UnitInterval = 0.25,
        box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_threshold: UnitInterval = 0.05,
        nms_threshold: UnitInterval = 0.5,
        detections_per_image: PositiveInt = 100,
        smooth_l1_beta: NonNegativeFloat = 1.0,
        mask_head: MaskHeadConfig | None = None,
        class_weights: Sequence[float] | None = None,
        conv_dims: Sequence[int] = (),
        num_fcs: NonNegativeInt = 2,
        norm: bool = False,
        aligned: bool = True,
        min_box_size: NonNegativeFloat = 1e-3,
        crop: CropConfig | None = None,
        fc_precision: Literal["fp32", "bf16", "auto"] = "fp32",
    ) -> None:
        super().__init__()
        self.in_features = list(in_features)
        self.num_classes = num_classes
        self.pooler, channels = build_region_extractor(pooler, input_shape, in_features, pool_size, sampling_ratio,
                                                       aligned, crop)
        self.min_box_size = min_box_size
        if conv_dims or num_fcs != 2:
            if pooler == "spp":
                raise ConfigError("roi_head: conv_dims need a square pooled grid; pooler 'spp' has none")
            self.box_head = ConvFCBoxHead(channels, pool_size, conv_dims, [fc_dim] * num_fcs, norm)
        else:
            self.box_head = TwoFCBoxHead(self.pooler.output_size_of(channels), fc_dim)
        self.box_predictor = BoxPredictor(fc_dim, num_classes)
        if fc_precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"roi_head.fc_precision must be 'fp32', 'bf16' or 'auto', got {fc_precision!r}")
        self.fc_precision = fc_precision
        self.box_coder = BoxCoder(box_coder_weights)
        self.roi_sampler = RoISampler(num_classes, self.box_coder, iou_threshold, batch_size_per_image,
                                      positive_fraction)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.detections_per_image = detections_per_image
        self.smooth_l1_beta = smooth_l1_beta
        self.register_buffer("class_weights", class_weight_vector(class_weights, num_classes, "roi_head"),
                             persistent=False)
        self.mask_branch = None
        if mask_head is not None:
            if self.reads_image:
                raise ConfigError("roi_head: the mask branch pools feature maps of the image; pooler 'crop_warp' "
                                  "computes none")
            mask_cfg = mask_head if isinstance(mask_head, MaskHeadConfig) else MaskHeadConfig(**mask_head)
            mask_pooler = RoIPooler(self.pooler.strides, mask_cfg.pool_size, "roi_align", 2, aligned=aligned)
            self.mask_branch = MaskBranch(channels, mask_pooler, num_classes, mask_cfg)

    @property
    def reads_image(self) -> bool:
        """Whether the region features come from image crops (:class:`ImageFeatures`)."""
        return self.pooler.reads_image

    @property
    def predicts_masks(self) -> bool:
        return self.mask_branch is not None

    def forward(self, features: dict[str, Tensor] | ImageFeatures, proposals: Sequence[Instances],
                samples: Sequence[DetSample] | None = None) -> RoIHeadOutput:
        """Score and refine ``proposals``; given the ``samples`` (training), first sample RoIs
        among proposals + ground truth (:class:`RoISampler`)."""
        maps = [] if self.reads_image else [features[n] for n in self.in_features]
        targets = mask_logits = None
        if samples is None:
            rois = [p.boxes.tensor for p in proposals]
        else:
            targets = self.roi_sampler(proposals, samples)
            rois = targets.rois
        regions = extract_regions(self.pooler, features, self.in_features, rois)
        class_logits, deltas = self.box_predictor(self._box_features(regions, training=samples is not None))
        if samples is not None and self.mask_branch is not None:
            positives = [r[: len(m)] for r, m in zip(rois, targets.positive_gt)]
            if sum(len(p) for p in positives):
                mask_logits = self.mask_branch.logits(maps, positives)
        return RoIHeadOutput(rois, [p.image_size for p in proposals], class_logits, deltas, maps, targets,
                             mask_logits)

    def _box_features(self, regions: Tensor, training: bool) -> Tensor:
        """The box head on ``regions``, under bf16 autocast in training where ``fc_precision`` says."""
        device = regions.device.type
        bf16 = training and (self.fc_precision == "bf16" or (self.fc_precision == "auto" and device == "cpu"
                                                              and bool(bf16_units())))
        if not bf16:
            return self.box_head(regions)
        with torch.autocast(device, dtype=torch.bfloat16):
            return self.box_head(regions).float()

    def loss(self, raw: RoIHeadOutput, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        """CE + smooth-L1 on the sampled RoIs (and the mask loss on the positives when there
        is a mask branch)."""
        t = raw.targets
        all_labels, targets = torch.cat(t.labels), torch.cat(t.box_targets)
        loss_cls = class_weighted_cross_entropy(raw.class_logits, all_labels, self.class_weights, ignore_index=-100)
        foreground = torch.nonzero(all_labels < self.num_classes).flatten()
        deltas = raw.box_deltas.view(len(raw.box_deltas), self.num_classes, 4)[foreground, all_labels[foreground]]
        loss_box = smooth_l1_loss(deltas, targets[foreground], beta=self.smooth_l1_beta, reduction="sum")
        losses = {"loss_cls": loss_cls, "loss_box": loss_box / max(all_labels.numel(), 1)}
        if self.mask_branch is not None:
            positives = [len(m) for m in t.positive_gt]
            losses["loss_mask"] = self.mask_branch.loss(
                raw.mask_logits, [r[:k] for r, k in zip(t.rois, positives)],
                [lab[:k] for lab, k in zip(t.labels, positives)], t.positive_gt, [s.gt.masks for s in samples])
        return losses

    @torch.no_grad()
    def predict(self, raw: RoIHeadOutput, samples: Sequence[DetSample],
                output_sizes: Sequence[tuple[int, int]] | None = None) -> list[Instances]:
        """Decode class-specific boxes, threshold, per-class NMS, keep the top k.

        ``output_sizes``: per image, the size to return the detections at (the original
        image's), boxes scaled and masks pasted there; default: the proposals' size."""
        scores = raw.class_logits.softmax(-1)[:, : self.num_classes]
        results = select_per_image(raw, scores, self.box_coder, self.score_threshold, self.nms_threshold,
                                   self.detections_per_image, self.min_box_size)
        output = results
        if output_sizes is not None:
            output = [rescale_instances(r, size) for r, size in zip(results, output_sizes)]
        if self.mask_branch is not None:
            output = self.mask_branch.predict(raw.maps, results, output=output)
        return output


def select_per_image(raw: RoIHeadOutput, scores: Tensor, box_coder: BoxCoder, score_threshold: float,
                     nms_threshold: float, detections_per_image: int, min_box_size: float = 1e-3) -> list[Instances]:
    """Per image, the RoIs' class-specific boxes decoded from ``raw.box_deltas[sum K_i, 4C]``
    with their ``scores[sum K_i, C]``, through :func:`select_detections` (score threshold,
    per-class NMS, top k), at the proposals' image size."""
    num_classes = scores.shape[1]
    deltas = raw.box_deltas
    decoded = box_coder.decode(deltas, torch.cat(raw.rois)) if len(deltas) else deltas
    if len(raw.rois) == 1:  # no split by image, whose sizes a traced export would freeze
        per_image = [(raw.image_sizes[0], decoded, scores)]
    else:
        sizes = [len(b) for b in raw.rois]
        per_image = zip(raw.image_sizes, decoded.split(sizes), scores.split(sizes))
    return [select_detections(boxes.reshape(-1, num_classes, 4), image_scores, image_size, score_threshold,
                              nms_threshold, detections_per_image, min_box_size=min_box_size)
            for image_size, boxes, image_scores in per_image]
