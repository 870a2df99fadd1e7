"""Instance masks: COCO polygons and RLE <-> bitmaps, and pasting RoI masks into images.

Bitmaps are ``bool`` arrays ``[H, W]`` (numpy) or tensors ``[N, H, W]``. RLE dicts are
pycocotools' (``{"size": [h, w], "counts": ...}``, compressed or not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import Tensor


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons (each ``[x0, y0, x1, y1, ...]`` in pixels) -> ``bool[H, W]``."""
    polygons = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polygons:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """An RLE dict (compressed string counts or uncompressed list counts) -> ``bool[H, W]``."""
    height, width = rle["size"]
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, height, width)
    return mask_utils.decode(rle).astype(bool)


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` field (polygon list or RLE dict) -> ``bool[H, W]``."""
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    if isinstance(segmentation, dict):
        return rle_to_mask(segmentation)
    raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")


def mask_to_rle(mask: np.ndarray | Tensor) -> dict[str, Any]:
    """``bool[H, W]`` -> compressed RLE with ``counts`` as ``str`` (JSON-ready)."""
    if isinstance(mask, Tensor):
        mask = mask.cpu().numpy()
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours of ``bool[H, W]`` as COCO polygons (pixel-corner coordinates)."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) < 3:
            continue
        # cv2 gives pixel centres; the outline of those pixels lies half a pixel out, which
        # pycocotools' rasteriser reproduces closest with the centres shifted by +0.5.
        polygons.append((contour.reshape(-1, 2).astype(np.float64) + 0.5).ravel().tolist())
    return polygons


def paste_masks_in_image(
    masks: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float = 0.5
) -> Tensor:
    """Paste per-RoI mask probabilities into full images.

    Args:
        masks: ``float[N, M, M]`` probabilities, each covering its box.
        boxes: ``Tensor[N, 4]`` xyxy absolute pixels in the target image.
        image_size: ``(height, width)`` of the target image.
        threshold: probability at or above which a pixel is foreground.

    Returns:
        ``bool[N, H, W]``.
    """
    height, width = image_size
    n = masks.shape[0]
    if n == 0:
        return torch.zeros((0, height, width), dtype=torch.bool, device=masks.device)
    boxes = boxes.to(masks.dtype)
    # Sample each mask at the image's pixel centres, expressed in the box's [-1, 1] frame.
    ys = torch.arange(height, device=masks.device, dtype=masks.dtype) + 0.5
    xs = torch.arange(width, device=masks.device, dtype=masks.dtype) + 0.5
    x1, y1, x2, y2 = boxes.unbind(1)
    gx = (xs[None, :] - x1[:, None]) / (x2 - x1).clamp(min=1e-6)[:, None] * 2 - 1  # [N, W]
    gy = (ys[None, :] - y1[:, None]) / (y2 - y1).clamp(min=1e-6)[:, None] * 2 - 1  # [N, H]
    grid = torch.stack(
        (gx[:, None, :].expand(n, height, width), gy[:, :, None].expand(n, height, width)), dim=3
    )
    pasted = F.grid_sample(masks[:, None], grid, mode="bilinear", align_corners=False,
                           padding_mode="zeros")
    return pasted[:, 0] >= threshold


def paste_masks_like_torchvision(masks: Tensor, boxes: Tensor, image_size: tuple[int, int],
                                 threshold: float = 0.5) -> Tensor:
    """:func:`paste_masks_in_image` by torchvision's rule (``roi_heads.paste_masks_in_image``),
    for the zoo models trained with it: each mask gets a one-cell zero border and its box is
    scaled to match, the box is truncated to whole pixels (its size counts both end pixels),
    and the mask is resized bilinearly onto it. Same arguments and result."""
    height, width = image_size
    n, m = masks.shape[0], masks.shape[-1]
    out = torch.zeros((n, height, width), dtype=torch.bool, device=masks.device)
    if n == 0:
        return out
    padded = F.pad(masks, (1, 1, 1, 1))
    scale = (m + 2) / m
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    cx, cy = (boxes[:, 2] + boxes[:, 0]) * 0.5, (boxes[:, 3] + boxes[:, 1]) * 0.5
    expanded = torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=1).to(torch.int64)
    for i, (x1, y1, x2, y2) in enumerate(expanded.tolist()):
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        resized = F.interpolate(padded[i][None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        x0, x1_ = max(x1, 0), min(x2 + 1, width)
        y0, y1_ = max(y1, 0), min(y2 + 1, height)
        if x0 < x1_ and y0 < y1_:
            out[i, y0:y1_, x0:x1_] = resized[y0 - y1:y1_ - y1, x0 - x1:x1_ - x1] > threshold
    return out
