"""Shared pieces of the zoo parity tests: torchvision models with random weights spread
wide enough that scores are not near-ties, images, and the comparison of detections."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from detseg.config import load_config, to_plain
from detseg.models import build_model
from detseg.structures import DetSample

ROOT = Path(__file__).resolve().parents[2]


@torch.no_grad()
def randomise(model: nn.Module, calibrate, seed: int = 0) -> nn.Module:
    """Kaiming-normal weights, small random biases and random BatchNorm affine parameters,
    then BatchNorm statistics measured on one training forward (``calibrate(model)``), so
    that features stay near unit scale and every layer's output varies. A fresh detection
    model's heads are near zero, and which of its near-tied scores survive NMS would be down
    to float rounding. Returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            if isinstance(module, nn.ConvTranspose2d):
                fan_in = module.weight.shape[0] * module.weight[0, 0].numel()
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
        elif isinstance(module, nn.BatchNorm2d):
            n = module.weight.shape[0]
            module.weight.copy_(0.5 + torch.rand(n, generator=generator))
            module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: one forward sets the statistics
    model.train()
    calibrate(model)
    return model.eval()


def smooth_image(height: int, width: int, seed: int) -> torch.Tensor:
    """``uint8[3, H, W]``: random blobs (noise up-sampled 8x), more image-like than noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(height // 8, 2), max(width // 8, 2), generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return (image[0] * 255).round().to(torch.uint8)


def samples_of(images: list[torch.Tensor]) -> list[DetSample]:
    return [DetSample(image=image, image_id=i, orig_size=tuple(image.shape[1:])) for i, image in enumerate(images)]


def detseg_model(builder: str, state_file: Path, overrides: list[str] = ()) -> nn.Module:
    """The detseg config mirroring ``builder``, initialised from ``state_file``."""
    cfg = to_plain(load_config(ROOT / "configs" / "model" / f"tv_{builder}.yaml",
                               [f"init_from={state_file}", *overrides]))
    return build_model(cfg).eval()


def assert_same_detections(ours, theirs, box_tol: float = 1e-3, score_tol: float = 1e-4,
                           min_count: int = 1, mask_agreement: float | None = None) -> int:
    """detseg ``Instances`` vs a torchvision output dict: same count, boxes, scores, labels
    (torchvision's label k is detseg's k - 1), and masks (thresholded at 0.5) on at least
    ``mask_agreement`` of the pixels. Returns the number of detections compared."""
    n = len(ours)
    assert n == len(theirs["boxes"]), f"{n} detections vs torchvision's {len(theirs['boxes'])}"
    assert n >= min_count, f"only {n} detections to compare"
    order = torch.argsort(ours.scores, descending=True, stable=True)
    their_order = torch.argsort(theirs["scores"], descending=True, stable=True)
    torch.testing.assert_close(ours.scores[order], theirs["scores"][their_order], atol=score_tol, rtol=0)
    torch.testing.assert_close(ours.boxes.tensor[order], theirs["boxes"][their_order], atol=box_tol, rtol=0)
    assert torch.equal(ours.labels[order], theirs["labels"][their_order] - 1)
    if mask_agreement is not None:
        our_masks = ours.masks[order]
        their_masks = theirs["masks"][their_order][:, 0] > 0.5
        agreement = (our_masks == their_masks).float().mean().item()
        assert agreement >= mask_agreement, f"masks agree on {agreement:.5f} of the pixels"
    return n
