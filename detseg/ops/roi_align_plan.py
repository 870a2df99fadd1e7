"""The sparse matrix of RoIAlign: per output bin, the (feature position, weight) entries.

RoIAlign is linear in the features, ``out = A @ features``; this module builds ``A`` (NumPy)
and :mod:`detseg.ops.roi_align_fast` applies it and its transpose. Semantics are
torchvision's (``torchvision/csrc/ops/cpu/roi_align_kernel.cpp``), with the coordinates
computed in the input's dtype in the same order of operations: sample points with
``y < -1`` or ``y > H`` (same for ``x``) contribute zero, others are clamped into the map;
``aligned=False`` forces RoIs to at least 1x1; ``sampling_ratio <= 0`` takes
``ceil(roi_size / output_size)`` samples per bin side, per RoI. The entries are built per
axis (a bin's 2-D weights are the outer product of its row and column weights) and the
neighbours of a bin's samples are merged by position, so a bin reads ``span_h x span_w``
positions (e.g. 3 x 3 instead of torchvision's 16 reads when its 2 x 2 samples fall within
2 pixels).

The plan comes in parts (usually one) so that the transient memory of a call stays bounded:
``max_entries`` caps the entries of a part and ``pad_slack`` decides when the RoIs of a part
are padded to its widest window; the caller owns both limits.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# Cap on an adaptive grid side (torchvision's would overflow an int long before).
_MAX_GRID = 1 << 12

__all__ = ["Part", "build_plan"]


class Part:
    """One part of a plan: RoIs ``ids`` (None: all ``k``, in order). Bin ``b = p * k + r`` (``p``: bin in the
    ``PH x PW`` grid, ``r``: the part's ``r``-th RoI) reads the feature positions ``index``
    with weights ``weight``: ``[bins, n]`` (n entries per bin), or flat ``[E]`` with
    ``offsets [bins]`` (bin ``b``: entries from ``offsets[b]`` up to the next bin's)."""

    __slots__ = ("ids", "k", "index", "weight", "offsets")

    def __init__(self, ids: np.ndarray | None, k: int, index: np.ndarray, weight: np.ndarray,
                 offsets: np.ndarray | None) -> None:
        self.ids, self.k, self.index, self.weight, self.offsets = ids, k, index, weight, offsets

    @property
    def entries(self) -> int:
        return self.index.size

    def bag(self, table: Tensor) -> Tensor:
        """``[bins, C]``: every bin's weighted sum of ``table`` rows."""
        offsets = None if self.offsets is None else torch.from_numpy(self.offsets)
        return F.embedding_bag(torch.from_numpy(self.index), table, offsets, mode="sum",
                               per_sample_weights=torch.from_numpy(self.weight))

    def entry_rows(self, k: int, bins: int) -> np.ndarray:
        """Per entry, its bin as a row of the all-RoI table (``p * k + RoI id``)."""
        dtype = self.index.dtype
        if self.ids is None:
            rows = np.arange(bins * self.k, dtype=dtype)
        else:
            rows = (np.arange(bins, dtype=dtype)[:, None] * k + self.ids.astype(dtype)[None, :]).reshape(-1)
        if self.offsets is None:
            return np.repeat(rows, self.index.shape[1])
        counts = np.diff(self.offsets, append=self.offsets.dtype.type(self.entries))
        return np.repeat(rows, counts)


def _axis(start: np.ndarray, bin_size: np.ndarray, grid: np.ndarray, pooled: int, size: int,
          index_dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows (or columns) each bin reads along one axis, and their weights.

    Per RoI ``k`` and bin ``p``: ``grid[k]`` sample points at ``start + p * bin_size +
    (i + .5) * bin_size / grid`` (torchvision's expression, evaluated in the same order and
    dtype), each with a low and a high neighbour (``pre_calc_for_bilinear_interpolate``,
    one axis at a time: a 2-D weight is the product of its two axis weights, and a sample is
    off the map when it is off along either axis, so the product is zero exactly when
    torchvision's weight is). A bin's neighbours on the map are merged by position (samples
    closer than a pixel share neighbours).

    Returns ``positions [K, pooled, S]``, ``weights [K, pooled, S]`` (divided by ``grid``;
    zero in the unused slots) and each RoI's count of slots ``[K]`` (the most positions one
    of its bins reads), with ``S`` the largest count.
    """
    dtype = start.dtype.type
    k = start.shape[0]
    g = max(int(grid.max()), 1)
    p = np.arange(pooled, dtype=dtype)
    i = np.arange(g, dtype=dtype) + dtype(0.5)
    b = bin_size[:, None, None]
    gf = grid.astype(dtype)[:, None, None]
    # roi_start + p * bin_size + (i + .5) * bin_size / grid, left to right as in C++
    coord = (start[:, None, None] + p[None, :, None] * b) + (i[None, None, :] * b) / gf  # [K, P, G]
    real = np.arange(g)[None, None, :] < grid[:, None, None]  # adaptive grids are padded to G
    valid = (coord >= -1.0) & (coord <= size) & real
    # torchvision: y <= 0 -> 0; the clamp at `size` (and NaN -> 0) only touches invalid
    # samples, whose weight is 0
    c = np.clip(np.nan_to_num(coord, nan=0.0), 0, size).astype(dtype)
    low = c.astype(index_dtype)  # truncation, c >= 0
    top = low >= size - 1
    low = np.minimum(low, size - 1).astype(index_dtype)
    high = np.where(top, low, low + 1).astype(index_dtype)
    c = np.where(top, low.astype(dtype), c)
    lw = c - low.astype(dtype)  # T ly = y - y_low
    hw = dtype(1) - lw
    scale = valid.astype(dtype) / np.maximum(gf, dtype(1))  # grid 0: no valid samples
    # merge by position: sort a bin's 2G neighbours (off-map ones last), one slot per position
    on_map = np.concatenate([valid, valid], axis=2)
    pos = np.where(on_map, np.concatenate([low, high], axis=2), size)
    weight = np.concatenate([hw * scale, lw * scale], axis=2)
    order = np.argsort(pos, axis=2, kind="stable")
    pos = np.take_along_axis(pos, order, axis=2)
    weight = np.take_along_axis(weight, order, axis=2)
    new = np.ones(pos.shape, dtype=bool)
    new[:, :, 1:] = pos[:, :, 1:] != pos[:, :, :-1]
    slot = np.cumsum(new, axis=2) - 1
    used = np.where(pos < size, slot + 1, 0).max(axis=2)  # [K, P] positions on the map
    span = np.maximum(used.max(axis=1), 1)  # [K]
    s = int(span.max())
    slot = np.minimum(slot, s - 1)  # off-map neighbours (weight 0) share the last slot
    flat = (slot + (np.arange(k * pooled, dtype=np.int64) * s).reshape(k, pooled, 1)).reshape(-1)
    weights = np.bincount(flat, weight.reshape(-1), minlength=k * pooled * s).astype(dtype).reshape(k, pooled, s)
    on = (pos < size).reshape(-1)
    positions = np.zeros(k * pooled * s, dtype=index_dtype)  # unused slots: position 0, weight 0
    positions[flat[on]] = pos.reshape(-1)[on]  # entries sharing a slot share the position
    return positions.reshape(k, pooled, s), weights, span


def _chunk_parts(rois: np.ndarray, start: np.ndarray, bins: np.ndarray, grid: np.ndarray,
                 ids: np.ndarray | None, pooled: tuple[int, int], shape: tuple[int, int, int],
                 index_dtype: type, max_entries: int, pad_slack: float) -> list[Part]:
    """Parts for the RoIs ``ids`` (None: all). A bin reads ``span_h x span_w`` positions (the
    most any bin of its RoI reads); the RoIs of a part are padded to its widest (zero weights)
    unless that wastes more than ``pad_slack``: then each bin gets its own RoI's entries
    (flat, with offsets), built per group of RoIs with equal spans."""
    ph, pw = pooled
    _, height, width = shape
    if ids is not None:
        rois, start, bins, grid = rois[ids], start[ids], bins[ids], grid[ids]
    yi, yw, span_h = _axis(start[:, 1], bins[:, 1], grid[:, 1], ph, height, index_dtype)
    xi, xw, span_w = _axis(start[:, 0], bins[:, 0], grid[:, 0], pw, width, index_dtype)
    image = rois[:, 0].astype(index_dtype)  # int roi_batch_ind = offset_rois[0]: truncation
    rows = (image[:, None, None] * (height * width) + yi * width).astype(index_dtype)  # [K, PH, Sh]

    def build(sel: np.ndarray | None) -> Part:
        if sel is None:
            r, w_y, c, w_x, s_h, s_w, part_ids = rows, yw, xi, xw, span_h, span_w, ids
        else:
            r, w_y, c, w_x, s_h, s_w = rows[sel], yw[sel], xi[sel], xw[sel], span_h[sel], span_w[sel]
            part_ids = sel if ids is None else ids[sel]
        k = r.shape[0]
        area = s_h.astype(np.int64) * s_w
        sh, sw = int(s_h.max()), int(s_w.max())

        def entries(of: np.ndarray | None, sh: int, sw: int) -> tuple[np.ndarray, np.ndarray]:
            """``[PH, PW, k', sh, sw]`` positions and weights of the RoIs ``of`` (None: all);
            bins ordered (ph, pw, RoI): the output is then one 2-D transpose from NCHW."""
            rr, yy, cc, xx = (r, w_y, c, w_x) if of is None else (r[of], w_y[of], c[of], w_x[of])
            rr, yy = rr[:, :, :sh].transpose(1, 0, 2), yy[:, :, :sh].transpose(1, 0, 2)  # [PH, k', sh]
            cc, xx = cc[:, :, :sw].transpose(1, 0, 2), xx[:, :, :sw].transpose(1, 0, 2)  # [PW, k', sw]
            return rr[:, None, :, :, None] + cc[None, :, :, None, :], yy[:, None, :, :, None] * xx[None, :, :, None, :]

        if k * sh * sw <= pad_slack * int(area.sum()):  # one padded block
            index, weight = entries(None, sh, sw)
            n = ph * pw * k
            return Part(part_ids, k, index.reshape(n, sh * sw), weight.reshape(n, sh * sw), None)
        # RoIs grouped by (span_h, span_w), each group's entries scattered to its bins' offsets
        counts = np.tile(area, ph * pw)  # bin (p, r): area[r]
        offsets = np.cumsum(counts) - counts
        index = np.empty(int(counts.sum()), dtype=index_dtype)
        weight = np.empty(index.shape[0], dtype=w_y.dtype)
        key = s_h.astype(np.int64) * (sw + 1) + s_w
        order = np.argsort(key, kind="stable")
        _, first = np.unique(key[order], return_index=True)
        for begin, end in zip(first.tolist(), [*first[1:].tolist(), k]):
            of = order[begin:end]
            gh, gw = int(s_h[of[0]]), int(s_w[of[0]])
            g_index, g_weight = entries(of, gh, gw)
            bin_ids = np.arange(ph * pw)[:, None] * k + of[None, :]  # [P, k']
            dest = (offsets[bin_ids][:, :, None] + np.arange(gh * gw)).reshape(-1)
            index[dest] = g_index.reshape(-1)
            weight[dest] = g_weight.reshape(-1)
        return Part(part_ids, k, index, weight, offsets.astype(index_dtype))

    k = rois.shape[0]
    if k * ph * pw * int(span_h.max()) * int(span_w.max()) <= max_entries:
        return [build(None)]
    # too many entries for one part: RoIs by window area, in chunks
    order = np.argsort(span_h.astype(np.int64) * span_w, kind="stable")
    sh_sorted, sw_sorted = span_h[order].tolist(), span_w[order].tolist()
    parts, begin = [], 0
    while begin < k:
        end, sh, sw = begin + 1, sh_sorted[begin], sw_sorted[begin]
        while end < k:
            sh2, sw2 = max(sh, sh_sorted[end]), max(sw, sw_sorted[end])
            if (end + 1 - begin) * ph * pw * sh2 * sw2 > max_entries:
                break
            end, sh, sw = end + 1, sh2, sw2
        parts.append(build(order[begin:end]))
        begin = end
    return parts


def build_plan(rois: Tensor, pooled: tuple[int, int], shape: tuple[int, int, int],
               spatial_scale: float, sampling_ratio: int, aligned: bool, max_entries: int,
               pad_slack: float) -> list[Part]:
    """The (position, weight) entries of every output bin, in parts (usually one).

    Args:
        rois (Tensor[K, 5]): batch index, x1, y1, x2, y2 (float32 or float64, CPU).
        pooled: ``(PH, PW)``, the output size.
        shape: ``(B, H, W)`` of the feature map; positions index its ``B*H*W`` cells.
        spatial_scale, sampling_ratio, aligned: as in ``torchvision.ops.roi_align``.
        max_entries: the most (position, weight) entries in one part.
        pad_slack: pad a part's RoIs to its widest window unless that makes more than this
            many times the entries they need.

    Returns:
        Parts covering every RoI once (none for ``K = 0``).
    """
    ph, pw = pooled
    batch, height, width = shape
    index_dtype = np.int32 if batch * height * width < 2**31 - 1 else np.int64
    rois = rois.detach().numpy()
    dtype = rois.dtype.type
    k = rois.shape[0]
    if k == 0:
        return []
    with np.errstate(all="ignore"):  # NaN / inf boxes: no samples, as in torchvision
        offset = dtype(0.5 if aligned else 0.0)
        start = rois[:, 1:3] * dtype(spatial_scale) - offset  # (x, y); C++ takes the scale as T
        end = rois[:, 3:5] * dtype(spatial_scale) - offset
        size = end - start
        if not aligned:
            size = np.maximum(size, dtype(1))  # malformed RoIs forced to 1x1
        bins = size / np.array([pw, ph], dtype=dtype)  # (bin_w, bin_h)
        if sampling_ratio > 0:
            grid = np.full((k, 2), sampling_ratio, dtype=np.int64)
        else:  # ceil(roi_size / output_size) per RoI; 0 (no samples) for an empty RoI
            grid = np.minimum(np.where(bins > 0, np.ceil(bins), 0), _MAX_GRID).astype(np.int64)  # (gw, gh)
        # The per-axis arrays are padded to the largest grid: chunk RoIs (by grid size) so
        # that a few huge RoIs do not blow them up.
        side = grid.max(axis=1) * max(ph, pw)
        limits = (max_entries, pad_slack)
        if int(side.max()) * k <= max_entries:
            return _chunk_parts(rois, start, bins, grid, None, pooled, shape, index_dtype, *limits)
        order = np.argsort(side, kind="stable")
        side_list = side[order].tolist()
        parts, begin = [], 0
        while begin < k:
            stop = begin + 1
            while stop < k and side_list[stop] * (stop + 1 - begin) <= max_entries:
                stop += 1
            chunk = order[begin:stop]
            parts.extend(_chunk_parts(rois, start, bins, grid, chunk, pooled, shape, index_dtype, *limits))
            begin = stop
        return parts

