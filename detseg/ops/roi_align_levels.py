"""RoIAlign from the levels of a feature pyramid in one call: each RoI pooled from its own
level, the output in the RoIs' order.

Pooling level by level and then putting the rows back in the RoIs' order copies the whole
pooled tensor three times (concatenation, a zero-filled output, the indexed write) and once
more in the backward (an indexed read of the gradient): for 2048 RoIs x 64 channels x 7 x 7
that is 25 MB each time, ~10 % of the tiny Faster R-CNN's training step at 256 RoIs per
image. Here every level's sparse matrix (:mod:`detseg.ops.roi_align_plan`) writes its RoIs'
rows of the output directly, and the backward reads their rows of the upstream gradient in
place, with the kernels of :mod:`detseg.ops.roi_align_fast`: the numbers are the same bits
as level-by-level pooling with that module (the same entries, summed in the same order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from detseg.ops.roi_align_fast import (
    _SAVE_ENTRIES,
    _apply_transposed,
    _build_plan,
    _grad_table,
    _to_rows,
    _transpose,
)
from detseg.ops.roi_align_plan import Part

__all__ = ["RoIAlignLevelsFunction"]


def _level_plans(rois: Tensor, levels: np.ndarray, shapes: Sequence[tuple[int, int, int, int]],
                 output_size: tuple[int, int], scales: Sequence[float], sampling_ratio: int,
                 aligned: bool) -> list[list[Part]]:
    """Per level, the plan parts of the RoIs on it (``ids``: their rows among all RoIs)."""
    plans = []
    for level, (shape, scale) in enumerate(zip(shapes, scales)):
        ids = np.flatnonzero(levels == level)
        if ids.size == 0:
            plans.append([])
            continue
        batch, _, height, width = shape
        parts = _build_plan(rois[torch.from_numpy(ids)], output_size, (batch, height, width), scale,
                            sampling_ratio, aligned)
        if ids.size < rois.shape[0]:  # else ids None: the part holds every RoI, in order
            for part in parts:
                part.ids = ids if part.ids is None else ids[part.ids]
        plans.append(parts)
    return plans


class RoIAlignLevelsFunction(torch.autograd.Function):
    """``(rois [K, 5], levels int64[K], output_size, scales, sampling_ratio, aligned, *maps)``
    -> ``[K, C, PH, PW]``: RoI ``k`` pooled from ``maps[levels[k]]`` (each ``[B, C, H_l, W_l]``,
    CPU, one float dtype) at ``scales[levels[k]]``. Gradients wrt the maps (once
    differentiable)."""

    @staticmethod
    def forward(ctx, rois: Tensor, levels: Tensor, output_size: tuple[int, int], scales: Sequence[float],
                sampling_ratio: int, aligned: bool, *maps: Tensor) -> Tensor:
        ph, pw = output_size
        bins = ph * pw
        k, channels = rois.shape[0], maps[0].shape[1]
        shapes = [tuple(m.shape) for m in maps]
        ctx.meta = (output_size, tuple(scales), sampling_ratio, aligned, shapes,
                    [m.is_contiguous(memory_format=torch.channels_last) and not m.is_contiguous() for m in maps])
        level_ids = levels.numpy()
        plans = _level_plans(rois, level_ids, shapes, output_size, scales, sampling_ratio, aligned)
        out = None
        for feature, parts in zip(maps, plans):
            if not parts:
                continue
            table = _to_rows(feature)
            for part in parts:  # the levels' parts cover every RoI once
                pooled = _transpose(part.bag(table).numpy().reshape(bins, part.k * channels))
                if part.ids is None:  # all RoIs from this level: the output as it comes
                    out = pooled
                    break
                if out is None:
                    out = np.empty((k, channels, bins), dtype=pooled.dtype)
                out[part.ids] = pooled.reshape(part.k, channels, bins)
        if out is None:
            out = np.zeros((k, channels, bins), dtype=maps[0].detach().numpy().dtype)
        ctx.save_for_backward(rois, levels)
        entries = sum(p.entries for parts in plans for p in parts)
        ctx.plans = plans if any(ctx.needs_input_grad[6:]) and entries <= _SAVE_ENTRIES else None
        return torch.from_numpy(out).view(k, channels, ph, pw)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        output_size, scales, sampling_ratio, aligned, shapes, channels_last = ctx.meta
        rois, levels = ctx.saved_tensors
        plans = ctx.plans
        if plans is None:
            plans = _level_plans(rois, levels.numpy(), shapes, output_size, scales, sampling_ratio, aligned)
        table = _grad_table(grad_output) if rois.shape[0] else None
        grads = []
        for level, (parts, shape) in enumerate(zip(plans, shapes)):
            if not ctx.needs_input_grad[6 + level]:
                grads.append(None)
            elif not parts:
                grads.append(grad_output.new_zeros(shape))
            else:
                grads.append(_apply_transposed(parts, grad_output, shape, channels_last[level], table))
        return (None, None, None, None, None, None, *grads)
