"""The R-CNN box parameterisation (Girshick et al. 2014, appendix C).

For a reference box (anchor or proposal) with centre (x_a, y_a) and size (w_a, h_a) and a
target box (x, y, w, h)::

    t_x = w_x (x - x_a) / w_a      t_y = w_y (y - y_a) / h_a
    t_w = w_w log(w / w_a)         t_h = w_h log(h / h_a)

with per-coordinate weights ``(w_x, w_y, w_w, w_h)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)
"""Largest t_w, t_h fed to exp when decoding: a box at most 62.5x its reference."""


class BoxCoder:
    """Encode xyxy boxes as deltas against reference boxes, and decode them back.

    Args:
        weights: ``(w_x, w_y, w_w, w_h)``; Faster R-CNN's RoI head uses (10, 10, 5, 5).
        scale_clamp: upper clamp of ``t_w, t_h`` (after dividing by the weight) before exp.
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        scale_clamp: float = DEFAULT_SCALE_CLAMP,
    ) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, reference: Tensor, target: Tensor) -> Tensor:
        """Deltas ``Tensor[N, 4]`` that turn ``reference[N, 4]`` into ``target[N, 4]`` (xyxy)."""
        reference = reference.float()
        target = target.float()
        wx, wy, ww, wh = self.weights
        ref_w = reference[:, 2] - reference[:, 0]
        ref_h = reference[:, 3] - reference[:, 1]
        ref_x = reference[:, 0] + 0.5 * ref_w
        ref_y = reference[:, 1] + 0.5 * ref_h
        tgt_w = target[:, 2] - target[:, 0]
        tgt_h = target[:, 3] - target[:, 1]
        tgt_x = target[:, 0] + 0.5 * tgt_w
        tgt_y = target[:, 1] + 0.5 * tgt_h
        return torch.stack(
            (
                wx * (tgt_x - ref_x) / ref_w,
                wy * (tgt_y - ref_y) / ref_h,
                ww * torch.log(tgt_w / ref_w),
                wh * torch.log(tgt_h / ref_h),
            ),
            dim=1,
        )

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Boxes ``Tensor[N, K*4]`` (xyxy) from deltas ``[N, K*4]`` and ``reference[N, 4]``.

        ``K`` > 1 decodes class-specific deltas against the same reference box.
        """
        reference = reference.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        ref_w = (reference[:, 2] - reference[:, 0])[:, None]
        ref_h = (reference[:, 3] - reference[:, 1])[:, None]
        ref_x = reference[:, 0, None] + 0.5 * ref_w
        ref_y = reference[:, 1, None] + 0.5 * ref_h
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.scale_clamp)
        cx = dx * ref_w + ref_x
        cy = dy * ref_h + ref_y
        w = torch.exp(dw) * ref_w
        h = torch.exp(dh) * ref_h
        boxes = torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=2)
        return boxes.reshape(deltas.shape[0], -1)
