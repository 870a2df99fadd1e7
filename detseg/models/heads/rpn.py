"""Region Proposal Network (Ren et al. 2015): a proposal source for two-stage detectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.config import NonNegativeFloat, PositiveInt, UnitInterval
from detseg.errors import ConfigError
from detseg.models.backbones.base import FeatureSpec, select_features, shared_channels
from detseg.models.heads.base import ProposalSource, ignore_boxes
from detseg.ops import (
    AnchorGenerator,
    BalancedSampler,
    Matcher,
    batched_nms_top,
    box_iou,
    smooth_l1_loss,
)
from detseg.ops.matcher import IGNORE, NEGATIVE, POSITIVE, ignore_near_regions
from detseg.registry import PROPOSAL_SOURCES
from detseg.structures import BoxCoder, Boxes, DetSample, Instances


@dataclass
class RPNOutput:
    """Per level: ``objectness[N, H*W*A]`` logits, ``deltas[N, H*W*A, 4]`` and the
    ``anchors[H*W*A, 4]`` (xyxy input pixels) they refine, in (row, column, anchor) order."""

    objectness: list[Tensor]
    deltas: list[Tensor]
    anchors: list[Tensor]


@PROPOSAL_SOURCES.register("rpn")
class RPN(ProposalSource):
    """Anchors on each level, a shared 3x3 conv, and 1x1 objectness / box-delta convs.

    Args:
        input_shape: feature shapes (supplied by the model builder).
        in_features: levels to put anchors on; they must share a channel count.
        anchor_sizes: per level, anchor sizes in input pixels.
        aspect_ratios: height/width ratios, shared by all levels.
        iou_thresholds: ``(negative below, positive from)``; Faster R-CNN's (0.3, 0.7).
        batch_size_per_image: anchors sampled per image for the loss.
        positive_fraction: at most this share of the sample is positive.
        pre_nms_top_n: per level, the best-scoring anchors kept before NMS (train, test).
        post_nms_top_n: proposals kept per image after NMS (train, test).
        nms_threshold: IoU of NMS between proposals.
        min_size: proposals narrower or shorter than this (pixels) are dropped.
        smooth_l1_beta: of the box loss.
        score_threshold: proposals whose objectness probability is below this are dropped
            before NMS (torchvision's ``rpn_score_thresh``).
        anchor_offset: where in its cell an anchor is centred (0.5: the centre; 0.0: the
            top-left corner, as torchvision).
        round_anchors: round the cell anchors to whole pixels (torchvision).
        conv_depth: 3x3 conv + ReLU layers before the objectness and delta convs (torchvision's
            v2 models: 2).
        strides_from_image: each level's stride is the padded batch size // the map size,
            per axis (torchvision's rule; it differs from the nominal stride on a pooled
            level when the padded size is an odd multiple of the coarsest stride).
    """

    def __init__(
        self,
        input_shape: dict[str, FeatureSpec],
        in_features: Sequence[str],
        anchor_sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        iou_thresholds: tuple[UnitInterval, UnitInterval] = (0.3, 0.7),
        batch_size_per_image: PositiveInt = 256,
        positive_fraction: UnitInterval = 0.5,
        pre_nms_top_n: tuple[PositiveInt, PositiveInt] = (2000, 1000),
        post_nms_top_n: tuple[PositiveInt, PositiveInt] = (2000, 1000),
        nms_threshold: UnitInterval = 0.7,
        min_size: NonNegativeFloat = 1.0,
        smooth_l1_beta: NonNegativeFloat = 1.0 / 9,
        score_threshold: UnitInterval = 0.0,
        anchor_offset: float = 0.5,
        round_anchors: bool = False,
        strides_from_image: bool = False,
        conv_depth: PositiveInt = 1,
    ) -> None:
        super().__init__()
        specs = select_features(input_shape, in_features, "rpn")
        c = shared_channels(specs, "rpn")
        if len(anchor_sizes) != len(in_features):
            raise ConfigError(f"rpn: {len(anchor_sizes)} anchor_sizes lists for {len(in_features)} in_features")
        self.in_features = list(in_features)
        self.strides = [spec.stride for spec in specs.values()]
        self.anchor_generator = AnchorGenerator(anchor_sizes, [aspect_ratios], anchor_offset, round_anchors)
        self.strides_from_image = strides_from_image
        self.score_threshold = score_threshold
        num_anchors = self.anchor_generator.num_anchors_per_cell
        if len(set(num_anchors)) != 1:
            raise ConfigError("rpn: every level needs the same number of anchors per cell")
        self.conv = nn.Sequential(*[m for _ in range(conv_depth) for m in (nn.Conv2d(c, c, 3, padding=1), nn.ReLU())])
        self.objectness = nn.Conv2d(c, num_anchors[0], 1)
        self.deltas = nn.Conv2d(c, 4 * num_anchors[0], 1)
        for layer in (*self.conv[::2], self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(iou_thresholds[0], iou_thresholds[1], allow_low_quality_matches=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = tuple(pre_nms_top_n)
        self.post_nms_top_n = tuple(post_nms_top_n)
        self.nms_threshold = nms_threshold
        self.min_size = min_size
        self.smooth_l1_beta = smooth_l1_beta

    def forward(self, features: dict[str, Tensor], image_size: tuple[int, int]) -> RPNOutput:
        maps = [features[n] for n in self.in_features]
        objectness, deltas = [], []
        for x in maps:
            t = self.conv(x)
            b, _, h, w = t.shape
            if torch.is_grad_enabled() and not torch.jit.is_tracing():
                # Training: the 1x1 convolutions as matrix products over the channels of (B, H, W, C),
                # giving (B, H, W, A) and (B, H, W, 4A) in the anchors' order. The same arithmetic to
                # ~1e-6; the convolutions' CPU backward waits on thread wake-ups: 8-16 ms per call
                # against 0.1-0.6 ms with 2 threads on cores shared with other jobs (bench/README.md).
                # Inference keeps the convolutions (torchvision's numbers to the last bit).
                t = t.permute(0, 2, 3, 1)
                objectness.append(F.linear(t, self.objectness.weight.flatten(1), self.objectness.bias).reshape(b, -1))
                # channel a * 4 + k of the delta conv is coordinate k of anchor a
                deltas.append(F.linear(t, self.deltas.weight.flatten(1), self.deltas.bias).reshape(b, -1, 4))
                continue
            # (B, A, H, W) -> (B, H, W, A) -> (B, H*W*A), matching the anchors' order
            objectness.append(self.objectness(t).permute(0, 2, 3, 1).reshape(b, -1))
            deltas.append(self.deltas(t).view(b, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4))
        strides = self.strides
        if self.strides_from_image:
            height, width = image_size
            strides = [(height // m.shape[-2], width // m.shape[-1]) for m in maps]
        anchors = self.anchor_generator([m.shape[-2:] for m in maps], strides, device=maps[0].device)
        return RPNOutput(objectness, deltas, anchors)

    def predict(self, raw: RPNOutput, samples: Sequence[DetSample], training: bool = False) -> list[Instances]:
        return self._proposals(raw.anchors, raw.objectness, raw.deltas, [s.image_size for s in samples], training)

    def loss(self, raw: RPNOutput, samples: Sequence[DetSample]) -> dict[str, Tensor]:
        return self._losses(torch.cat(raw.anchors), torch.cat(raw.objectness, 1), torch.cat(raw.deltas, 1), samples)

    @torch.no_grad()
    def _proposals(self, anchors, objectness, deltas, image_sizes, training):
        """Per image: each level's ``pre_nms_top_n`` best anchors, decoded, clipped, small and
        low-scoring boxes dropped, per-level NMS, the ``post_nms_top_n`` best. The top-k and the
        decoding run for all images at once (a few large ops instead of images x levels small
        ones); the filters and NMS per image."""
        pre_n = self.pre_nms_top_n[0 if training else 1]
        post_n = self.post_nms_top_n[0 if training else 1]
        batch = objectness[0].shape[0]
        top_scores, top_deltas, top_anchors, levels = [], [], [], []
        for level, (a, o, d) in enumerate(zip(anchors, objectness, deltas)):
            k = min(pre_n, o.shape[1])
            scores, top = o.detach().topk(k, dim=1)  # [B, k]
            top_scores.append(scores)
            top_deltas.append(d.detach().gather(1, top[..., None].expand(-1, -1, 4)))  # [B, k, 4]
            top_anchors.append(a[top])
            levels.append(torch.full((k,), level, device=o.device))
        decoded = self.box_coder.decode(torch.cat(top_deltas, 1).reshape(-1, 4), torch.cat(top_anchors, 1).reshape(-1, 4))
        decoded = decoded.view(batch, -1, 4)
        probabilities, levels = torch.cat(top_scores, 1).sigmoid(), torch.cat(levels)
        out = []
        for i, size in enumerate(image_sizes):
            boxes, scores = Boxes(decoded[i]).clip(size), probabilities[i]
            keep = boxes.nonempty(self.min_size) & (scores >= self.score_threshold)
            boxes, scores, image_levels = boxes[keep], scores[keep], levels[keep]
            keep = batched_nms_top(boxes.tensor, scores, image_levels, self.nms_threshold, post_n)
            out.append(Instances(boxes[keep], torch.zeros_like(keep), size, scores=scores[keep]))
        return out

    def _losses(self, anchors, objectness, deltas, samples):
        labels, targets = [], []
        for sample in samples:
            gt = sample.gt.boxes.tensor.to(anchors.device)
            match = self.matcher(box_iou(gt, anchors))
            label = ignore_near_regions(match.labels, anchors, ignore_boxes(sample))
            pos, neg = self.sampler(label)
            sampled = torch.full_like(label, IGNORE)
            sampled[pos], sampled[neg] = POSITIVE, NEGATIVE
            labels.append(sampled)
            matched = gt[match.matched_gt] if len(gt) else torch.zeros_like(anchors)
            targets.append(self.box_coder.encode(anchors, matched))
        labels, targets = torch.stack(labels), torch.stack(targets)
        used = labels != IGNORE
        positive = labels == POSITIVE
        normaliser = max(int(used.sum()), 1)
        loss_cls = F.binary_cross_entropy_with_logits(objectness[used], positive[used].float(), reduction="sum")
        loss_box = smooth_l1_loss(deltas[positive], targets[positive], beta=self.smooth_l1_beta, reduction="sum")
        return {"loss_rpn_cls": loss_cls / normaliser, "loss_rpn_box": loss_box / normaliser}
