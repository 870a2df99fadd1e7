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

Semantics are torchvision's; :mod:`detseg.ops.roi_align_plan` builds the entries and says
how. This module applies them, as an ``autograd.Function``. The sums run in another order
than torchvision's: float32 results differ in the last bits, float64 ones by ~1e-15.

Only the two heavy products (``embedding_bag``) run as multi-threaded PyTorch ops. The
entries are built and sorted with NumPy and the layout changes (NCHW <-> rows of ``C``) are
2-D transposes by OpenCV (a project dependency; NumPy without it): single-threaded code
that does not wait for a second core, which on a loaded machine each multi-threaded op
can do for a scheduler slice.

:func:`roi_align` takes torchvision's arguments. ``boxes`` is a ``Tensor[K, 5]`` (batch
index, x1, y1, x2, y2) or a list of per-image ``Tensor[N, 4]``. Inputs that are not on the
CPU or not float32 / float64 go to torchvision unchanged, and so do all calls inside
:func:`reference_kernels` (an ``autograd.Function`` does not export: the exporter traces in
it) and compiled ones. Below ~16-32 channels (mask
targets: 1, image crops: 3) torchvision's kernel is faster: this one has a fixed cost of a
few ms per call (building the entries), then little per channel.

RoIPool is not here: torchvision's CPU ``roi_pool`` backward is one add per output element
at the forward's argmax, already a fraction of its forward (e.g. 25 ms vs 80 ms CPU time for
512 RoIs x 256 channels); a vectorised ``index_add_`` version was not faster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.ops as tv_ops  # also registers torch.ops.torchvision
from torch import Tensor

from detseg.ops.roi_align_plan import Part, build_plan

try:
    import cv2
except ImportError:  # pragma: no cover - opencv-python-headless is a dependency
    cv2 = None

# The limits are read at each call (tests shrink them to exercise chunked plans).
# Entries (position, weight) in one part of the plan: bounds the transient memory of a call.
_MAX_ENTRIES = 1 << 22
# Pad every RoI of a part to the part's widest window unless that makes more than this many
# times the entries it needs (then the padding is dropped and bins get offsets).
_PAD_SLACK = 1.3
# Keep the plan from the forward for the backward when it holds at most this many entries
# (4-byte position + weight each); larger plans are rebuilt in the backward.
_SAVE_ENTRIES = 1 << 24
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


_reference_only = False


@contextlib.contextmanager
def reference_kernels() -> Iterator[None]:
    """Within it, :func:`roi_align` always calls torchvision's kernel (what an exported graph
    can hold)."""
    global _reference_only
    before, _reference_only = _reference_only, True
    try:
        yield
    finally:
        _reference_only = before


def _use_fast(input: Tensor) -> bool:
    return (
        not _reference_only
        and input.device.type == "cpu"
        and input.dtype in _DTYPES
        and input.dim() == 4
        and input.shape[2] > 0
        and input.shape[3] > 0
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


def _build_plan(rois: Tensor, pooled: tuple[int, int], shape: tuple[int, int, int],
                spatial_scale: float, sampling_ratio: int, aligned: bool) -> list[Part]:
    """:func:`~detseg.ops.roi_align_plan.build_plan` under this module's current limits."""
    return build_plan(rois, pooled, shape, spatial_scale, sampling_ratio, aligned,
                      _MAX_ENTRIES, _PAD_SLACK)


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


def _apply(parts: list[Part], input: Tensor, k: int, pooled: tuple[int, int]) -> Tensor:
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


def _grad_table(grad_output: Tensor) -> Tensor:
    """``grad_output [K, C, PH, PW]`` as rows ``[PH*PW*K, C]``: row ``p * K + RoI``."""
    k, channels, ph, pw = grad_output.shape
    g = grad_output.detach().contiguous().numpy().reshape(k * channels, ph * pw)
    return torch.from_numpy(_transpose(g).reshape(ph * pw * k, channels))


def _apply_transposed(parts: list[Part], grad_output: Tensor, shape: tuple[int, int, int, int],
                      channels_last: bool, table: Tensor | None = None) -> Tensor:
    """``A^T @ grad_output``: the gradient wrt the features, ``[B, C, H, W]``. ``table``:
    :func:`_grad_table` of ``grad_output`` when the caller has it already."""
    batch, channels, height, width = shape
    k, _, ph, pw = grad_output.shape
    bins = ph * pw
    positions = batch * height * width
    table = _grad_table(grad_output) if table is None else table
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

    def __init__(self, parts: list[Part]) -> None:
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
        map_size = (batch, height, width)
        parts = _build_plan(rois, output_size, map_size, spatial_scale, sampling_ratio, aligned)
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
            plan = _Plan(_build_plan(rois, output_size, (batch, height, width), spatial_scale, sampling_ratio,
                                     aligned))
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
