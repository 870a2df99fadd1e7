"""RoIAlign whose CPU backward costs about what the forward does.

torchvision's CPU ``roi_align`` backward walks every output element (RoI x channel x bin)
and recomputes the bilinear weights of its sample points for each channel; for 512 RoIs x
256 channels it takes several times the forward. RoIAlign is linear in the features:
``out = A @ features`` with ``A`` sparse (per output bin: ``grid_h * grid_w`` sample points
x 4 bilinear neighbours). Here ``A`` is built once per call as a list of (flat feature
position, weight) entries per output bin and applied with
``F.embedding_bag(mode="sum", per_sample_weights=...)`` to the channels-last features
``[B*H*W, C]`` (FBGEMM's vectorised kernel: a position's ``C`` channels are one contiguous
row). The backward applies ``A^T``: the same entries sorted by feature position (a stable
radix sort, so the result is deterministic), then one more ``embedding_bag`` over the
upstream gradient. The forward keeps the entries for the backward.

Semantics are torchvision's (``torchvision/csrc/ops/cpu/roi_align_kernel.cpp``), with the
coordinates computed in the input's dtype in the same order of operations: sample points
with ``y < -1`` or ``y > H`` (same for ``x``) contribute zero, others are clamped into the
map; ``aligned=False`` forces RoIs to at least 1x1; ``sampling_ratio <= 0`` takes
``ceil(roi_size / output_size)`` samples per bin side, per RoI. The entries are built per
axis (a bin's 2-D weights are the outer product of its row and column weights) and the
neighbours of a bin's samples are merged by position, so a bin reads ``span_h x span_w``
positions (e.g. 3 x 3 instead of torchvision's 16 reads when its 2 x 2 samples fall within
2 pixels). The sums run in another order than torchvision's: float32 results differ in the
last bits, float64 ones by ~1e-15.

Only the two heavy products (``embedding_bag``) run as multi-threaded PyTorch ops. The
entries are built and sorted with NumPy and the layout changes (NCHW <-> rows of ``C``) are
2-D transposes by OpenCV (a project dependency; NumPy without it): single-threaded code
that does not wait for a second core, which on a loaded machine each multi-threaded op
can do for a scheduler slice.

:func:`roi_align` takes torchvision's arguments. ``boxes`` is a ``Tensor[K, 5]`` (batch
index, x1, y1, x2, y2) or a list of per-image ``Tensor[N, 4]``. Inputs that are not on the
CPU or not float32 / float64 go to torchvision unchanged, and so do traced / scripted /
compiled calls (an ``autograd.Function`` does not export). Below ~16-32 channels (mask
targets: 1, image crops: 3) torchvision's kernel is faster: this one has a fixed cost of a
few ms per call (building the entries), then little per channel.

RoIPool is not here: torchvision's CPU ``roi_pool`` backward is one add per output element
at the forward's argmax, already a fraction of its forward (e.g. 25 ms vs 80 ms CPU time for
512 RoIs x 256 channels); a vectorised ``index_add_`` version was not faster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.ops as tv_ops  # also registers torch.ops.torchvision
from torch import Tensor

try:
    import cv2
except ImportError:  # pragma: no cover - opencv-python-headless is a dependency
    cv2 = None

# Entries (position, weight) in one part of the plan: bounds the transient memory of a call.
_MAX_ENTRIES = 1 << 22
# Pad every RoI of a part to the part's widest window unless that makes more than this many
# times the entries it needs (then the padding is dropped and bins get offsets).
_PAD_SLACK = 1.3
# Keep the plan from the forward for the backward when it holds at most this many entries
# (4-byte position + weight each); larger plans are rebuilt in the backward.
_SAVE_ENTRIES = 1 << 24
# Cap on an adaptive grid side (torchvision's would overflow an int long before).
_MAX_GRID = 1 << 12
_DTYPES = (torch.float32, torch.float64)

__all__ = ["RoIAlignFunction", "roi_align"]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return size[0], size[0]
    return size[0], size[1]


def _as_rois(boxes: Tensor | Sequence[Tensor], dtype: torch.dtype) -> Tensor:
    """``Tensor[K, 5]`` as is, or per-image ``Tensor[N_i, 4]`` with the image index prepended."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes must be a Tensor[K, 5] or a list of Tensor[N, 4], got {tuple(boxes.shape)}")
        return boxes.to(dtype)
    if not isinstance(boxes, (list, tuple)):
        raise TypeError("boxes must be a Tensor[K, 5] or a list of Tensor[N, 4]")
    for b in boxes:
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"every box tensor in the list must be [N, 4], got {tuple(b.shape)}")
    if not boxes:
        return torch.zeros(0, 5, dtype=dtype)
    index = torch.cat([torch.full_like(b[:, :1], i, dtype=dtype) for i, b in enumerate(boxes)])
    return torch.cat([index, torch.cat(list(boxes)).to(dtype)], dim=1)


def _use_fast(input: Tensor) -> bool:
    return (
        input.device.type == "cpu"
        and input.dtype in _DTYPES
        and input.dim() == 4
        and input.shape[2] > 0
        and input.shape[3] > 0
        and not torch.jit.is_scripting()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def _transpose(a: np.ndarray) -> np.ndarray:
    """A C-contiguous transpose of the 2-D ``a`` (OpenCV's blocked one: ~3x NumPy's)."""
    if cv2 is not None and a.shape[0] > 1 and a.shape[1] > 1 and a.flags.c_contiguous:
        out = cv2.transpose(a)
        if out.shape == (a.shape[1], a.shape[0]) and out.dtype == a.dtype:
            return out
    return np.ascontiguousarray(a.T)


def _to_rows(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` -> ``[B*H*W, C]`` (contiguous; free when ``x`` is channels_last)."""
    batch, channels, height, width = x.shape
    x = x.detach()
    if x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    planes = x.contiguous().numpy().reshape(batch, channels, height * width)
    if batch == 1:
        return torch.from_numpy(_transpose(planes[0]))
    rows = np.empty((batch, height * width, channels), dtype=planes.dtype)
    for b in range(batch):
        rows[b] = _transpose(planes[b])
    return torch.from_numpy(rows.reshape(batch * height * width, channels))


def _from_rows(rows: Tensor, shape: tuple[int, int, int, int], channels_last: bool) -> Tensor:
    """``[B*H*W, C]`` -> ``[B, C, H, W]``, contiguous (or channels_last: a view)."""
    batch, channels, height, width = shape
    if channels_last or channels == 1:
        out = rows.view(batch, height, width, channels).permute(0, 3, 1, 2)
        return out if channels_last else out.contiguous()
    planes = rows.numpy().reshape(batch, height * width, channels)
    if batch == 1:
        return torch.from_numpy(_transpose(planes[0])).view(shape)
    out = np.empty((batch, channels, height * width), dtype=planes.dtype)
    for b in range(batch):
        out[b] = _transpose(planes[b])
    return torch.from_numpy(out).view(shape)


# ----------------------------------------------------------------------------------------
# The plan: for each output bin, (flat position in [B*H*W], weight) entries. NumPy.
# ----------------------------------------------------------------------------------------


class _Part:
    """RoIs ``ids`` (None: all ``k``, in order). Bin ``b = p * k + r`` (``p``: bin in the
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
                 index_dtype: type) -> list[_Part]:
    """Parts for the RoIs ``ids`` (None: all). A bin reads ``span_h x span_w`` positions (the
    most any bin of its RoI reads); the RoIs of a part are padded to its widest (zero weights)
    unless that wastes more than ``_PAD_SLACK``: then each bin gets its own RoI's entries
    (flat, with offsets), built per group of RoIs with equal spans."""
    ph, pw = pooled
    _, height, width = shape
    if ids is not None:
        rois, start, bins, grid = rois[ids], start[ids], bins[ids], grid[ids]
    yi, yw, span_h = _axis(start[:, 1], bins[:, 1], grid[:, 1], ph, height, index_dtype)
    xi, xw, span_w = _axis(start[:, 0], bins[:, 0], grid[:, 0], pw, width, index_dtype)
    image = rois[:, 0].astype(index_dtype)  # int roi_batch_ind = offset_rois[0]: truncation
    rows = (image[:, None, None] * (height * width) + yi * width).astype(index_dtype)  # [K, PH, Sh]

    def build(sel: np.ndarray | None) -> _Part:
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

        if k * sh * sw <= _PAD_SLACK * int(area.sum()):  # one padded block
            index, weight = entries(None, sh, sw)
            n = ph * pw * k
            return _Part(part_ids, k, index.reshape(n, sh * sw), weight.reshape(n, sh * sw), None)
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
        return _Part(part_ids, k, index, weight, offsets.astype(index_dtype))

    k = rois.shape[0]
    if k * ph * pw * int(span_h.max()) * int(span_w.max()) <= _MAX_ENTRIES:
        return [build(None)]
    # too many entries for one part: RoIs by window area, in chunks
    order = np.argsort(span_h.astype(np.int64) * span_w, kind="stable")
    sh_sorted, sw_sorted = span_h[order].tolist(), span_w[order].tolist()
    parts, begin = [], 0
    while begin < k:
        end, sh, sw = begin + 1, sh_sorted[begin], sw_sorted[begin]
        while end < k:
            sh2, sw2 = max(sh, sh_sorted[end]), max(sw, sw_sorted[end])
            if (end + 1 - begin) * ph * pw * sh2 * sw2 > _MAX_ENTRIES:
                break
            end, sh, sw = end + 1, sh2, sw2
        parts.append(build(order[begin:end]))
        begin = end
    return parts


def _plan(rois: Tensor, pooled: tuple[int, int], shape: tuple[int, int, int], spatial_scale: float,
          sampling_ratio: int, aligned: bool) -> list[_Part]:
    """The (position, weight) entries of every output bin, in parts (usually one)."""
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
        if int(side.max()) * k <= _MAX_ENTRIES:
            return _chunk_parts(rois, start, bins, grid, None, pooled, shape, index_dtype)
        order = np.argsort(side, kind="stable")
        side_list = side[order].tolist()
        parts, begin = [], 0
        while begin < k:
            stop = begin + 1
            while stop < k and side_list[stop] * (stop + 1 - begin) <= _MAX_ENTRIES:
                stop += 1
            parts.extend(_chunk_parts(rois, start, bins, grid, order[begin:stop], pooled, shape, index_dtype))
            begin = stop
        return parts


def _stable_order(keys: np.ndarray, bound: int) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for keys in ``[0, bound)``, by 16-bit radix passes."""
    if bound <= 1 << 16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    if bound <= 1 << 32:
        order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
        return order[np.argsort((keys[order] >> 16).astype(np.uint16), kind="stable")]
    return np.argsort(keys, kind="stable")


# ----------------------------------------------------------------------------------------
# Applying A (forward) and A^T (backward)
# ----------------------------------------------------------------------------------------


def _apply(parts: list[_Part], input: Tensor, k: int, pooled: tuple[int, int]) -> Tensor:
    """``A @ input``: ``[K, C, PH, PW]``."""
    ph, pw = pooled
    bins = ph * pw
    channels = input.shape[1]
    table = _to_rows(input)
    if len(parts) == 1 and parts[0].ids is None:  # bins (p, RoI) -> [K*C, P]
        rows = parts[0].bag(table).numpy().reshape(bins, k * channels)
        return torch.from_numpy(_transpose(rows)).view(k, channels, ph, pw)
    out = np.empty((k, channels, bins), dtype=table.numpy().dtype)
    for p in parts:  # the parts cover every RoI once
        rows = p.bag(table).numpy().reshape(bins, p.k * channels)
        out[p.ids] = _transpose(rows).reshape(p.k, channels, bins)
    return torch.from_numpy(out).view(k, channels, ph, pw)


def _apply_transposed(parts: list[_Part], grad_output: Tensor, shape: tuple[int, int, int, int],
                      channels_last: bool) -> Tensor:
    """``A^T @ grad_output``: the gradient wrt the features, ``[B, C, H, W]``."""
    batch, channels, height, width = shape
    k, _, ph, pw = grad_output.shape
    bins = ph * pw
    positions = batch * height * width
    g = grad_output.detach().contiguous().numpy().reshape(k * channels, bins)
    table = torch.from_numpy(_transpose(g).reshape(bins * k, channels))  # row p * k + RoI
    grad = None
    batches, current, size = [], [], 0
    for p in parts:  # parts batched up to _MAX_ENTRIES entries per sort
        if current and size + p.entries > _MAX_ENTRIES:
            batches.append(current)
            current, size = [], 0
        current.append(p)
        size += p.entries
    if current:
        batches.append(current)
    for group in batches:
        col = np.concatenate([p.index.reshape(-1) for p in group])
        row = np.concatenate([p.entry_rows(k, bins) for p in group])
        weight = np.concatenate([p.weight.reshape(-1) for p in group])
        order = _stable_order(col, positions)  # stable: a deterministic sum order
        counts = np.bincount(col, minlength=positions)
        offsets = (np.cumsum(counts) - counts).astype(row.dtype)
        part_grad = F.embedding_bag(torch.from_numpy(row[order]), table, torch.from_numpy(offsets), mode="sum",
                                    per_sample_weights=torch.from_numpy(weight[order]))
        grad = part_grad if grad is None else grad.add_(part_grad)
    if grad is None:
        grad = grad_output.new_zeros(positions, channels)
    return _from_rows(grad, shape, channels_last)


class _Plan:
    """The parts, carried through autograd (not a tensor)."""

    def __init__(self, parts: list[_Part]) -> None:
        self.parts = parts


class _TransposedFunction(torch.autograd.Function):
    """``grad_output -> A^T grad_output``; its own backward is ``A``, so double backward works."""

    @staticmethod
    def forward(ctx, grad_output: Tensor, plan: _Plan, shape: tuple[int, int, int, int],
                channels_last: bool) -> Tensor:
        ctx.plan = plan
        ctx.k = grad_output.shape[0]
        ctx.pooled = tuple(grad_output.shape[2:])
        return _apply_transposed(plan.parts, grad_output, shape, channels_last)

    @staticmethod
    def backward(ctx, grad_grad: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        return _apply(ctx.plan.parts, grad_grad, ctx.k, ctx.pooled), None, None, None


class RoIAlignFunction(torch.autograd.Function):
    """``(input [B, C, H, W], rois [K, 5])`` -> ``[K, C, PH, PW]``; gradient wrt ``input`` only.

    ``torchvision_forward=True`` takes the output from torchvision's kernel and computes only
    the backward here.
    """

    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
                sampling_ratio: int, aligned: bool, torchvision_forward: bool = False) -> Tensor:
        ph, pw = output_size
        batch, channels, height, width = input.shape
        k = rois.shape[0]
        ctx.meta = (output_size, spatial_scale, sampling_ratio, aligned, tuple(input.shape),
                    input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous())
        ctx.plan = None
        ctx.save_for_backward(rois)
        if k == 0 or channels == 0:
            return input.new_zeros(k, channels, ph, pw)
        if torchvision_forward:
            return torch.ops.torchvision.roi_align(input, rois, spatial_scale, ph, pw, sampling_ratio, aligned)
        parts = _plan(rois, output_size, (batch, height, width), spatial_scale, sampling_ratio, aligned)
        out = _apply(parts, input, k, output_size)
        if ctx.needs_input_grad[0] and sum(p.entries for p in parts) <= _SAVE_ENTRIES:
            ctx.plan = _Plan(parts)
        return out

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        output_size, spatial_scale, sampling_ratio, aligned, shape, channels_last = ctx.meta
        (rois,) = ctx.saved_tensors
        none = (None,) * 6
        if not ctx.needs_input_grad[0]:
            return (None, *none)
        batch, channels, height, width = shape
        if rois.shape[0] == 0 or channels == 0:
            return (grad_output.new_zeros(shape), *none)
        plan = ctx.plan
        if plan is None:
            plan = _Plan(_plan(rois, output_size, (batch, height, width), spatial_scale, sampling_ratio, aligned))
        return (_TransposedFunction.apply(grad_output, plan, shape, channels_last), *none)


def roi_align(input: Tensor, boxes: Tensor | Sequence[Tensor], output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False, *,
              torchvision_forward: bool = False) -> Tensor:
    """``torchvision.ops.roi_align`` with a backward as cheap as its forward on the CPU.

    Args as torchvision's; ``boxes`` may be of another float dtype than ``input`` (cast).
    ``torchvision_forward``: take the forward's output from torchvision's kernel (only the
    backward is this module's).
    """
    if not _use_fast(input):
        return tv_ops.roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    rois = _as_rois(boxes, input.dtype).to(input.device)
    return RoIAlignFunction.apply(input, rois, _pair(output_size), float(spatial_scale), int(sampling_ratio),
                                  bool(aligned), bool(torchvision_forward))
