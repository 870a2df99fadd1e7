"""detseg.ops.roi.roi_align_levels: one call over pyramid levels, against level-by-level pooling
(detseg's fast kernel: the same bits; torchvision's: within 1e-5), forward and gradient."""

import pytest
import torch
import torchvision

from detseg.ops import roi_align_fast
from detseg.ops.roi import pools_levels_at_once, roi_align, roi_align_levels

SCALES = [1 / 4, 1 / 8, 1 / 16]


def pyramid(channels=32, batch=2, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, 40 // s, 48 // s, generator=g, dtype=dtype) for s in (1, 2, 4)]


def boxes_and_levels(counts=(7, 5), seed=1, levels=None):
    """Per image ``[K_i, 4]`` boxes over a 160 x 192 image (some partly outside), and a level per box."""
    g = torch.Generator().manual_seed(seed)
    boxes = []
    for n in counts:
        xy = torch.rand(n, 2, generator=g) * torch.tensor([200.0, 170.0]) - 10
        wh = torch.rand(n, 2, generator=g) * 90 + 0.5
        boxes.append(torch.cat([xy, xy + wh], 1))
    total = sum(counts)
    if levels is None:
        levels = torch.randint(0, 3, (total,), generator=g)
    return boxes, torch.as_tensor(levels, dtype=torch.int64).expand(total).clone()


def level_by_level(maps, boxes, levels, op, sampling_ratio, aligned):
    """Each level's boxes pooled by ``op`` (image index kept), rows put back in the boxes' order."""
    image = torch.cat([torch.full((len(b),), i, dtype=torch.int64) for i, b in enumerate(boxes)])
    flat = torch.cat(boxes)
    out = None
    for k, (feature, scale) in enumerate(zip(maps, SCALES)):
        index = torch.nonzero(levels == k).flatten()
        if len(index) == 0:
            continue
        per_image = [flat[index[image[index] == i]] for i in range(len(boxes))]
        rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(per_image)])
        pooled = op(feature, rois.to(feature), (7, 7), scale, sampling_ratio, aligned)
        if out is None:
            out = pooled.new_zeros((len(flat), *pooled.shape[1:]))
        out = out.index_copy(0, index, pooled)
    return out


def outputs_and_grads(fn, maps, upstream_seed=5):
    maps = [m.clone().requires_grad_() for m in maps]
    out = fn(maps)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(upstream_seed), dtype=out.dtype)
    return out, torch.autograd.grad(out, maps, upstream, allow_unused=True)


@pytest.mark.parametrize("sampling_ratio,aligned", [(0, True), (2, False), (1, True)])
def test_same_bits_as_the_fast_kernel_level_by_level_and_close_to_torchvision(sampling_ratio, aligned):
    maps = pyramid()
    boxes, levels = boxes_and_levels()
    assert set(levels.tolist()) == {0, 1, 2}
    ours, grads = outputs_and_grads(lambda m: roi_align_levels(m, boxes, levels, 7, SCALES, sampling_ratio, aligned),
                                    maps)
    fast, fast_grads = outputs_and_grads(
        lambda m: level_by_level(m, boxes, levels, roi_align_fast.roi_align, sampling_ratio, aligned), maps)
    tv, tv_grads = outputs_and_grads(
        lambda m: level_by_level(m, boxes, levels, torchvision.ops.roi_align, sampling_ratio, aligned), maps)
    assert torch.equal(ours, fast)
    assert all(torch.equal(a, b) for a, b in zip(grads, fast_grads))
    assert (ours - tv).abs().max() <= 1e-5
    for a, b in zip(grads, tv_grads):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, b.abs().max().item())


def test_one_level_only_an_empty_level_and_no_boxes():
    maps = pyramid(dtype=torch.float64)
    boxes, levels = boxes_and_levels(levels=1)  # every box on the middle level
    out, grads = outputs_and_grads(lambda m: roi_align_levels(m, boxes, levels, 7, SCALES, 0, True), maps)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i), dtype=torch.float64), b.double()], 1)
                      for i, b in enumerate(boxes)])
    ref, ref_grads = outputs_and_grads(lambda m: torchvision.ops.roi_align(m[1], rois, 7, SCALES[1], 0, True), maps)
    assert (out - ref).abs().max() < 1e-12
    assert (grads[1] - ref_grads[1]).abs().max() < 1e-12
    assert torch.equal(grads[0], torch.zeros_like(maps[0])) and torch.equal(grads[2], torch.zeros_like(maps[2]))
    empty = [torch.zeros(0, 4), torch.zeros(0, 4)]
    out, grads = outputs_and_grads(
        lambda m: roi_align_levels(m, empty, torch.zeros(0, dtype=torch.int64), 7, SCALES, 0, True), maps)
    assert out.shape == (0, 32, 7, 7)
    assert all(torch.equal(g, torch.zeros_like(m)) for g, m in zip(grads, maps))


def test_chunked_plans_and_plans_rebuilt_in_the_backward(monkeypatch):
    maps = pyramid(dtype=torch.float64, seed=3)
    boxes, levels = boxes_and_levels(counts=(9, 8), seed=4)
    reference = outputs_and_grads(lambda m: level_by_level(m, boxes, levels, torchvision.ops.roi_align, 0, True), maps)
    for max_entries, slack, save in ((500, 1.0, 1 << 24), (700, 100.0, 0)):
        monkeypatch.setattr(roi_align_fast, "_MAX_ENTRIES", max_entries)
        monkeypatch.setattr(roi_align_fast, "_PAD_SLACK", slack)
        monkeypatch.setattr("detseg.ops.roi_align_levels._SAVE_ENTRIES", save)
        out, grads = outputs_and_grads(lambda m: roi_align_levels(m, boxes, levels, 7, SCALES, 0, True), maps)
        assert (out - reference[0]).abs().max() < 1e-12
        assert all((a - b).abs().max() < 1e-12 for a, b in zip(grads, reference[1]))


def test_which_maps_pool_at_once():
    assert pools_levels_at_once(pyramid(channels=32))
    assert not pools_levels_at_once(pyramid(channels=8))  # few channels: torchvision's kernel per level
    maps = pyramid(channels=32)
    assert not pools_levels_at_once([maps[0], maps[1].double(), maps[2]])
    with roi_align_fast.reference_kernels():  # what an export traces
        assert not pools_levels_at_once(maps)
    # the single-level wrapper agrees on the same boxes
    boxes, _ = boxes_and_levels()
    levels = torch.zeros(sum(len(b) for b in boxes), dtype=torch.int64)
    assert torch.equal(roi_align_levels(maps, boxes, levels, 7, SCALES, 0, True), roi_align(maps[0], boxes, 7, SCALES[0]))
