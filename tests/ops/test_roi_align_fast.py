"""detseg.ops.roi_align_fast against torchvision.ops.roi_align: forward and gradient."""

import math

import pytest
import torch
import torchvision

from detseg.ops import roi_align_fast
from detseg.ops.roi_align_fast import roi_align

B, C, H, W = 2, 5, 13, 17  # two images; maps small enough for a table of cases


def box_table(scale: float, aligned: bool, sampling_ratio: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    """``[K, 5]`` RoIs on both images, in input-image pixels (the map is ``H x W`` at ``scale``):
    inside, partly outside, fully outside (each side), tiny (< 1 map pixel, zero-size and,
    where torchvision accepts it, inverted), huge."""
    g = torch.Generator().manual_seed(seed)
    w_img, h_img = W / scale, H / scale
    px = 1.0 / scale  # one map pixel in image pixels
    inside_xy = torch.rand(8, 2, generator=g) * torch.tensor([w_img, h_img]) * 0.7
    inside_wh = (torch.rand(8, 2, generator=g) * 0.5 + 0.05) * torch.tensor([w_img, h_img])
    boxes = [torch.cat([inside_xy, inside_xy + inside_wh], 1)]
    boxes.append(torch.tensor([
        [-3 * px, 2 * px, 4 * px, 6 * px],  # partly outside: left
        [w_img - 3 * px, -2 * px, w_img + 5 * px, 3 * px],  # partly outside: right and top
        [2 * px, h_img - 2 * px, 6 * px, h_img + 4 * px],  # partly outside: bottom
        [-20 * px, -20 * px, -8 * px, -8 * px],  # fully outside: above left, beyond y = -1
        [w_img + 2 * px, 1 * px, w_img + 9 * px, 5 * px],  # fully outside: right
        [1 * px, h_img + 1.5 * px, 5 * px, h_img + 6 * px],  # fully outside: below
        [-1.4 * px, -1.2 * px, -0.3 * px, -0.1 * px],  # just outside, samples near -1
        [3.3 * px, 4.1 * px, 3.6 * px, 4.3 * px],  # tiny
        [5 * px, 5 * px, 5 * px, 5 * px],  # zero size
        [w_img - 0.5 * px, h_img - 0.5 * px, w_img - 0.2 * px, h_img - 0.1 * px],  # tiny, last pixel
        [-3 * w_img, -2 * h_img, 4 * w_img, 3 * h_img],  # huge
        [0.0, 0.0, w_img, h_img],  # the whole map
    ]))
    if not (aligned and sampling_ratio <= 0):  # torchvision fails on an inverted RoI there
        boxes.append(torch.tensor([[7 * px, 6 * px, 4 * px, 2 * px], [3 * px, 3 * px, 2.5 * px, 1 * px]]))
    boxes = torch.cat(boxes)
    image = (torch.arange(len(boxes)) % B).to(boxes)[:, None]
    return torch.cat([image, boxes], 1).to(dtype)


def check_parity(x, rois, output_size, scale, sampling_ratio, aligned, seed=0, **kwargs):
    x = x.detach().requires_grad_()
    ref = torchvision.ops.roi_align(x, rois, output_size, scale, sampling_ratio, aligned)
    out = roi_align(x, rois, output_size, scale, sampling_ratio, aligned, **kwargs)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=ref.dtype)
    (grad_ref,) = torch.autograd.grad(ref, x, upstream)
    (grad,) = torch.autograd.grad(out, x, upstream)
    tol = 1e-12 if x.dtype == torch.float64 else 1e-5
    # forward: averages of the input, O(1); gradient: sums of many terms, relative to its size
    assert (out - ref).abs().max().item() <= tol
    assert (grad - grad_ref).abs().max().item() <= tol * max(1.0, grad_ref.abs().max().item())
    return out, grad


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2, 4])
@pytest.mark.parametrize("output_size", [7, (14, 14), (7, 5)])
@pytest.mark.parametrize("scale", [1.0, 1 / 4, 1 / 16])
def test_parity_table(aligned, sampling_ratio, output_size, scale):
    x = torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(1))
    rois = box_table(scale, aligned, sampling_ratio)
    check_parity(x, rois, output_size, scale, sampling_ratio, aligned)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2, 3])
def test_parity_float64(aligned, sampling_ratio):
    x = torch.randn(B, C, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for scale in (1.0, 1 / 4):
        rois = box_table(scale, aligned, sampling_ratio, torch.float64, seed=3)
        check_parity(x, rois, (7, 5), scale, sampling_ratio, aligned)


def test_random_float64():
    """Random maps, boxes, output sizes and sampling ratios; float64, tight."""
    g = torch.Generator().manual_seed(4)
    for _ in range(40):
        b, c, h, w = (int(torch.randint(1, n, (1,), generator=g)) for n in (3, 5, 20, 20))
        scale = [1.0, 0.5, 0.25, 2.0, 0.3][int(torch.randint(0, 5, (1,), generator=g))]
        k = int(torch.randint(1, 12, (1,), generator=g))
        xy = (torch.rand(k, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3) * torch.tensor([w, h]) / scale
        wh = torch.rand(k, 2, generator=g, dtype=torch.float64) * torch.tensor([w, h]) / scale
        rois = torch.cat([torch.randint(0, b, (k, 1), generator=g).double(), xy, xy + wh], 1)
        size = tuple(int(s) for s in torch.randint(1, 9, (2,), generator=g))
        sampling_ratio = [0, 1, 2, 3, 5][int(torch.randint(0, 5, (1,), generator=g))]
        aligned = bool(torch.randint(0, 2, (1,), generator=g))
        x = torch.randn(b, c, h, w, dtype=torch.float64, generator=g)
        check_parity(x, rois, size, scale, sampling_ratio, aligned)


def test_boxes_as_list_and_empty():
    x = torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(5)).requires_grad_()
    boxes = [torch.tensor([[1.0, 2.0, 9.0, 8.0], [0.5, 0.5, 3.0, 12.0]]), torch.tensor([[4.0, 1.0, 16.0, 6.0]])]
    ref = torchvision.ops.roi_align(x, boxes, 3, 1.0, 2, True)
    assert (roi_align(x, boxes, 3, 1.0, 2, True) - ref).abs().max() <= 1e-6
    # K = 0: a Tensor[0, 5], a list of empty tensors, an empty list
    for empty in (torch.zeros(0, 5), [torch.zeros(0, 4), torch.zeros(0, 4)], []):
        out = roi_align(x, empty, (7, 5), 0.25, 0, True)
        assert out.shape == (0, C, 7, 5)
        (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
        assert grad is None or not grad.any()
    # an image with RoIs and one without
    out, _ = check_parity(x, [torch.zeros(0, 4), boxes[0]], 4, 1.0, 0, False)
    assert out.shape == (2, C, 4, 4)


def test_gradcheck():
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(6)).requires_grad_()
    rois = torch.tensor([[0, 0.3, 0.7, 4.2, 5.1], [0, -1.2, 2.0, 3.3, 7.5], [0, 2.0, 2.5, 2.2, 2.6]],
                        dtype=torch.float64)
    for sampling_ratio, aligned in ((0, True), (2, False)):
        assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, 3, 1.0, sampling_ratio, aligned), (x,))
    # the backward is linear in the upstream gradient, with A as its own backward
    assert torch.autograd.gradgradcheck(lambda t: roi_align(t, rois, (2, 3), 1.0, 2, True), (x,))


def test_torchvision_forward_with_fast_backward():
    x = torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(7))
    rois = box_table(0.25, True, 2)
    out, _ = check_parity(x, rois, 7, 0.25, 2, True, torchvision_forward=True)
    assert torch.equal(out, torchvision.ops.roi_align(x, rois, 7, 0.25, 2, True))


def test_layouts_dtypes_and_determinism():
    x = torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(8))
    rois = box_table(0.5, True, 0)
    _, grad = check_parity(x, rois, 7, 0.5, 0, True)
    # channels_last in, channels_last gradient out
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    out = roi_align(xc, rois, 7, 0.5, 0, True)
    (grad_c,) = torch.autograd.grad(out, xc, torch.randn(out.shape, generator=torch.Generator().manual_seed(0)))
    assert grad_c.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(grad_c, grad)  # same sums in the same order
    # a non-contiguous input; float64 boxes with a float32 input (cast)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    assert torch.equal(roi_align(xt, rois.double(), 7, 0.5, 0, True), roi_align(x, rois, 7, 0.5, 0, True))
    # deterministic: the same bits on a second run
    x2 = x.clone().requires_grad_()
    out = roi_align(x2, rois, 7, 0.5, 0, True)
    (again,) = torch.autograd.grad(out, x2, torch.randn(out.shape, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(again, grad)
    # no grad / inference mode
    with torch.inference_mode():
        assert torch.equal(roi_align(x, rois, 7, 0.5, 0, True), out.detach())


def test_parts_padding_and_chunks(monkeypatch):
    """Small part limits: the chunked, grouped (flat entries with offsets) and padded plans."""
    x = torch.randn(B, C, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    for max_entries, slack in ((400, 1.0), (300, 100.0), (1 << 22, 1.0)):
        monkeypatch.setattr(roi_align_fast, "_MAX_ENTRIES", max_entries)
        monkeypatch.setattr(roi_align_fast, "_PAD_SLACK", slack)
        for sampling_ratio in (0, 2):
            rois = box_table(0.25, False, sampling_ratio, torch.float64, seed=10)
            check_parity(x, rois, (5, 4), 0.25, sampling_ratio, False)
    monkeypatch.setattr(roi_align_fast, "_SAVE_ENTRIES", 0)  # the backward rebuilds the plan
    check_parity(x, box_table(0.25, True, 0, torch.float64), 7, 0.25, 0, True)


def test_realistic_float32_accuracy():
    """512 RoIs x 64 channels on a stride-8 map: float32 output and gradient as close to the
    float64 result (same boxes) as torchvision's own float32 ones are."""
    g = torch.Generator().manual_seed(11)
    x64 = torch.randn(1, 64, 50, 68, dtype=torch.float64, generator=g)
    side = torch.exp(torch.empty(512, 2).uniform_(math.log(16), math.log(400), generator=g))
    centre = torch.rand(512, 2, generator=g) * torch.tensor([544.0, 400.0])
    rois = torch.cat([torch.zeros(512, 1), centre - side / 2, centre + side / 2], 1)  # float32 boxes
    upstream = torch.randn(512, 64, 7, 7, generator=g, dtype=torch.float64)
    results = {}
    for name, op in (("tv", torchvision.ops.roi_align), ("fast", roi_align)):
        for dtype in (torch.float32, torch.float64):
            x = x64.to(dtype).requires_grad_()
            out = op(x, rois.to(dtype), 7, 1 / 8, 0, True)
            results[name, dtype] = (out.detach().double(), torch.autograd.grad(out, x, upstream.to(dtype))[0].double())
    truth_out, truth_grad = results["tv", torch.float64]
    assert (results["fast", torch.float64][0] - truth_out).abs().max() < 1e-12
    assert (results["fast", torch.float64][1] - truth_grad).abs().max() < 1e-12 * truth_grad.abs().max()
    errors = {name: [(results[name, torch.float32][i] - truth).abs().max().item()
                     for i, truth in enumerate((truth_out, truth_grad))] for name in ("tv", "fast")}
    scale = truth_grad.abs().max().item()
    assert errors["fast"][0] <= 2 * errors["tv"][0] + 1e-6
    assert errors["fast"][1] <= 2 * errors["tv"][1] + 1e-6 * scale


def test_reference_kernels_route_every_call_to_torchvision_and_nest():
    """Export traces inside ``reference_kernels()``: the fast autograd function cannot be
    held by a graph, torchvision's op can."""
    x = torch.randn(1, 64, 20, 20, requires_grad=True)
    rois = torch.tensor([[0.0, 1.0, 1.0, 10.0, 10.0]])

    def backward_name():
        return type(roi_align_fast.roi_align(x, rois, (7, 7), 1.0, 2, True).grad_fn).__name__

    assert "torchvision" not in backward_name()
    with roi_align_fast.reference_kernels():
        assert "torchvision" in backward_name()
        with roi_align_fast.reference_kernels():
            pass
        assert "torchvision" in backward_name()  # still on after the inner block
    assert "torchvision" not in backward_name()
