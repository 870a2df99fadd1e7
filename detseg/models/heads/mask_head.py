"""Mask R-CNN's mask branch (He et al. 2017): per-RoI, per-class 28x28 mask logits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.errors import ConfigError
from detseg.ops import roi_align
from detseg.structures import Instances
from detseg.structures.masks import paste_masks_in_image, paste_masks_like_torchvision


@dataclass
class MaskHeadConfig:
    """The ``roi_head.mask_head`` node: RoIAlign ``pool_size`` (14), ``num_convs`` 3x3
    convs of ``conv_dim`` channels, a 2x deconvolution, then per-class logits at
    ``2 * pool_size``; ``loss_weight`` scales the mask loss; ``norm`` puts BatchNorm after each
    conv (torchvision's v2 model); ``paste`` picks how a 28x28 mask goes into the image:
    ``grid_sample`` (bilinear at pixel centres) or ``torchvision`` (its rule, for its zoo)."""

    pool_size: int = 14
    num_convs: int = 4
    conv_dim: int = 256
    loss_weight: float = 1.0
    norm: bool = False
    paste: Literal["grid_sample", "torchvision"] = "grid_sample"


def mask_targets(gt_masks: Tensor, boxes: Tensor, matched_gt: Tensor, size: int) -> Tensor:
    """The ground-truth mask of each RoI, cropped to the RoI and resized to ``size x size``.

    Args:
        gt_masks: ``bool[G, H, W]`` instance masks of one image.
        boxes: ``Tensor[K, 4]`` xyxy RoIs in the same image.
        matched_gt: ``int64[K]`` which ground truth each RoI learns.

    Returns:
        ``float[K, size, size]`` of 0/1: a target pixel is 1 when the bilinearly sampled
        mask is >= 0.5 at its centre (pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)``).
    """
    if len(boxes) == 0:
        return gt_masks.new_zeros((0, size, size), dtype=torch.float32)
    masks = gt_masks[matched_gt].float()[:, None]  # one mask per RoI, so RoI k reads image k
    return (roi_align(masks, list(boxes.float()[:, None]), size, 1.0, sampling_ratio=2, aligned=True)[:, 0]
            >= 0.5).float()


class MaskBranch(nn.Module):
    """RoIAlign -> convs -> deconv -> 1x1 per-class logits ``[K, C, 2S, 2S]``."""

    def __init__(self, in_channels: int, pooler: nn.Module, num_classes: int, cfg: MaskHeadConfig) -> None:
        super().__init__()
        self.pooler = pooler
        self.num_classes = num_classes
        self.loss_weight = cfg.loss_weight
        self.resolution = 2 * cfg.pool_size
        self.paste = paste_masks_like_torchvision if cfg.paste == "torchvision" else paste_masks_in_image
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(cfg.num_convs):
            layers.append(nn.Conv2d(channels, cfg.conv_dim, 3, padding=1, bias=not cfg.norm))
            layers += [nn.BatchNorm2d(cfg.conv_dim), nn.ReLU(inplace=True)] if cfg.norm else [nn.ReLU(inplace=True)]
            channels = cfg.conv_dim
        self.convs = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(channels, cfg.conv_dim, 2, stride=2)
        self.predictor = nn.Conv2d(cfg.conv_dim, num_classes, 1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def logits(self, maps: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """``[sum K_i, C, 2S, 2S]`` logits of per-image ``boxes`` (``[K_i, 4]`` xyxy input pixels).

        At inference on the CPU (no autograd, not traced) the convolutions run on channels-last
        activations, which oneDNN takes without converting them: for R50-FPN Mask R-CNN's 100
        RoIs x 256 channels the branch then takes ~0.7x the time (the same numbers to ~1e-7;
        ``bench/README.md``). Training keeps the contiguous layout."""
        x = self.pooler(maps, boxes)
        if (x.device.type == "cpu" and not torch.is_grad_enabled() and not torch.jit.is_tracing()
                and not torch.compiler.is_compiling()):
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.convs(x)
        return self.predictor(F.relu(self.deconv(x), inplace=True))

    def loss(self, logits: Tensor | None, boxes: list[Tensor], labels: list[Tensor],
             matched_gt: list[Tensor], gt_masks: Sequence[Tensor | None]) -> Tensor:
        """Binary CE of the ground-truth class's logits only, over positive RoIs.

        ``logits``: :meth:`logits` of the positive ``boxes`` (``None`` when there is none)."""
        targets = []
        for image_boxes, image_matched, masks in zip(boxes, matched_gt, gt_masks):
            if masks is None:
                raise ConfigError("the mask head needs instance masks in the ground truth")
            targets.append(mask_targets(masks.to(image_boxes.device), image_boxes, image_matched, self.resolution))
        if logits is None:
            return sum(p.sum() for p in self.parameters()) * 0.0
        labels = torch.cat(labels)
        selected = logits[torch.arange(len(labels), device=labels.device), labels]
        return self.loss_weight * F.binary_cross_entropy_with_logits(selected, torch.cat(targets))

    @torch.no_grad()
    def predict(self, maps: list[Tensor], detections: list[Instances], threshold: float = 0.5,
                output: list[Instances] | None = None) -> list[Instances]:
        """Add ``masks`` (``bool[N, H, W]``) to the detections.

        ``output``: the same detections at another image size (the original image's); the
        masks are then pasted there, from features pooled with ``detections``' boxes."""
        output = detections if output is None else output
        boxes = [d.boxes.tensor for d in detections]
        if sum(len(b) for b in boxes) == 0:
            return [Instances(d.boxes, d.labels, d.image_size, d.scores,
                              torch.zeros((0, *d.image_size), dtype=torch.bool)) for d in output]
        probs = self.logits(maps, boxes).sigmoid()
        out, start = [], 0
        for d in output:
            n = d.labels.shape[0]  # not len(d): a traced export must not freeze the count
            image_probs = probs[start:start + n][torch.arange(n, device=probs.device), d.labels]
            start += n
            masks = self.paste(image_probs, d.boxes.tensor, d.image_size, threshold)
            out.append(Instances(d.boxes, d.labels, d.image_size, d.scores, masks))
        return out
