"""Each op against a brute-force reference on random inputs, empty inputs included."""

import math

import pytest
import torch

from detseg.ops import (
    IGNORE,
    NEGATIVE,
    POSITIVE,
    AnchorGenerator,
    BalancedSampler,
    Matcher,
    batched_nms,
    box_iou,
    nms,
    roi_align,
    roi_pool,
)


def random_boxes(n, seed, size=64.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2 + 0.5
    return torch.cat([xy, xy + wh], dim=1)


def iou_brute(a, b):
    out = torch.zeros(len(a), len(b))
    for i, p in enumerate(a.tolist()):
        for j, q in enumerate(b.tolist()):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


@pytest.mark.parametrize("n,m", [(7, 11), (0, 5), (5, 0), (0, 0)])
def test_box_iou_matches_brute_force(n, m):
    a, b = random_boxes(n, 1), random_boxes(m, 2)
    assert torch.allclose(box_iou(a, b), iou_brute(a, b), atol=1e-6)
    assert box_iou(a, b).shape == (n, m)


def nms_brute(boxes, scores, labels, threshold):
    order = sorted(range(len(boxes)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(labels[i] != labels[k] or iou_brute(boxes[i:i + 1], boxes[k:k + 1])[0, 0] <= threshold
               for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_matches_greedy_per_class_reference(seed):
    boxes = random_boxes(60, seed, size=40.0)
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(60, generator=g)
    labels = torch.randint(0, 3, (60,), generator=g)
    keep = batched_nms(boxes, scores, labels, 0.5)
    assert keep.tolist() == nms_brute(boxes, scores, labels, 0.5)
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0


# The lecture's NMS example (xyxy, 10 x 10 boxes unless said otherwise):
#   0 A [ 0,  0, 10, 10] 0.90  class 0
#   1 B [ 2,  0, 12, 10] 0.80  class 0   IoU(A, B) = 80 / 120 = 2/3  -> suppressed by A
#   2 C [ 4,  0, 14, 10] 0.70  class 0   IoU(A, C) = 60 / 140 = 3/7  -> kept; IoU(B, C) = 2/3
#                                        does not count: B was suppressed before C came up
#   3 D [20, 20, 30, 30] 0.95  class 0   no overlap with A, B, C     -> kept (first)
#   4 E [20, 20, 30, 25] 0.85  class 0   10 x 5; IoU(D, E) = 50 / 100 = 1/2: not > 0.5 -> kept
#   5 F [21, 21, 31, 31] 0.60  class 1   IoU(D, F) = 81 / 119        -> suppressed by D, but
#                                        only when classes are ignored
NMS_BOXES = torch.tensor([[0.0, 0, 10, 10], [2, 0, 12, 10], [4, 0, 14, 10],
                          [20, 20, 30, 30], [20, 20, 30, 25], [21, 21, 31, 31]])
NMS_SCORES = torch.tensor([0.90, 0.80, 0.70, 0.95, 0.85, 0.60])
NMS_LABELS = torch.tensor([0, 0, 0, 0, 0, 1])


def test_nms_lecture_example_by_hand():
    """Hand-computed IoUs, then which boxes survive greedy NMS at IoU 0.5 (suppress only
    when IoU > 0.5), with and without classes, through every detseg entry point and
    torchvision.ops.nms; at 0.4, C (3/7) and E (1/2) go too."""
    import torchvision

    from detseg.ops.postprocess import select_detections

    iou = box_iou(NMS_BOXES, NMS_BOXES)
    hand = {(0, 1): 2 / 3, (0, 2): 3 / 7, (1, 2): 2 / 3, (3, 4): 1 / 2, (3, 5): 81 / 119, (0, 3): 0.0}
    for (i, j), value in hand.items():
        assert iou[i, j].item() == pytest.approx(value, abs=1e-6), (i, j)
    # by decreasing score: D 0.95, A 0.90, E 0.85, C 0.70 (B and F suppressed)
    assert nms(NMS_BOXES, NMS_SCORES, 0.5).tolist() == [3, 0, 4, 2]
    assert torchvision.ops.nms(NMS_BOXES, NMS_SCORES, 0.5).tolist() == [3, 0, 4, 2]
    assert batched_nms(NMS_BOXES, NMS_SCORES, torch.zeros(6, dtype=torch.int64), 0.5).tolist() == [3, 0, 4, 2]
    # per class, F (class 1) has nobody to suppress it
    assert batched_nms(NMS_BOXES, NMS_SCORES, NMS_LABELS, 0.5).tolist() == [3, 0, 4, 2, 5]
    assert torchvision.ops.batched_nms(NMS_BOXES, NMS_SCORES, NMS_LABELS, 0.5).tolist() == [3, 0, 4, 2, 5]
    assert nms(NMS_BOXES, NMS_SCORES, 0.4).tolist() == [3, 0]
    assert torchvision.ops.nms(NMS_BOXES, NMS_SCORES, 0.4).tolist() == [3, 0]
    # the detection heads' path: each box scored for its own class only
    scores = torch.zeros(6, 2)
    scores[torch.arange(6), NMS_LABELS] = NMS_SCORES
    detections = select_detections(NMS_BOXES, scores, (40, 40), score_threshold=0.05, nms_threshold=0.5, top_k=100)
    assert detections.boxes.tensor.tolist() == NMS_BOXES[[3, 0, 4, 2, 5]].tolist()
    assert detections.labels.tolist() == [0, 0, 0, 0, 1]
    assert detections.scores.tolist() == NMS_SCORES[[3, 0, 4, 2, 5]].tolist()


def roi_pool_brute(features, box, size, scale):
    _, height, width = features.shape
    x1, y1, x2, y2 = (round(v * scale) for v in box.tolist())
    roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    out = torch.zeros(features.shape[0], size, size)
    for ph in range(size):
        for pw in range(size):
            hs = min(max(math.floor(ph * roi_h / size) + y1, 0), height)
            he = min(max(math.ceil((ph + 1) * roi_h / size) + y1, 0), height)
            ws = min(max(math.floor(pw * roi_w / size) + x1, 0), width)
            we = min(max(math.ceil((pw + 1) * roi_w / size) + x1, 0), width)
            if he > hs and we > ws:
                out[:, ph, pw] = features[:, hs:he, ws:we].amax(dim=(1, 2))
    return out


def bilinear(feature, y, x):
    height, width = feature.shape[-2:]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return torch.zeros(feature.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * feature[:, y0, x0] + (1 - ly) * lx * feature[:, y0, x1]
            + ly * (1 - lx) * feature[:, y1, x0] + ly * lx * feature[:, y1, x1])


def roi_align_brute(features, box, size, scale, ratio):
    x1, y1, x2, y2 = (v * scale - 0.5 for v in box.tolist())  # aligned=True
    bin_w, bin_h = (x2 - x1) / size, (y2 - y1) / size
    out = torch.zeros(features.shape[0], size, size)
    for ph in range(size):
        for pw in range(size):
            acc = torch.zeros(features.shape[0])
            for iy in range(ratio):
                for ix in range(ratio):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / ratio
                    x = x1 + pw * bin_w + (ix + 0.5) * bin_w / ratio
                    acc += bilinear(features, y, x)
            out[:, ph, pw] = acc / ratio**2
    return out


def test_roi_pool_and_roi_align_match_brute_force():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 16, 20, generator=g)
    boxes = [random_boxes(3, 5, size=60.0), random_boxes(2, 6, size=60.0)]
    pooled = roi_pool(features, boxes, 4, spatial_scale=0.25)
    aligned = roi_align(features, boxes, 4, spatial_scale=0.25, sampling_ratio=2)
    assert pooled.shape == aligned.shape == (5, 3, 4, 4)
    k = 0
    for image, image_boxes in enumerate(boxes):
        for box in image_boxes:
            assert torch.allclose(pooled[k], roi_pool_brute(features[image], box, 4, 0.25), atol=1e-5)
            assert torch.allclose(aligned[k], roi_align_brute(features[image], box, 4, 0.25, 2), atol=1e-4)
            k += 1
    assert roi_align(features, [torch.zeros(0, 4), torch.zeros(0, 4)], 7, 0.25).shape == (0, 3, 7, 7)
    assert roi_pool(features, [torch.zeros(0, 4)] * 2, 7, 0.25).shape == (0, 3, 7, 7)


def test_anchor_generator_places_sizes_and_ratios_on_the_stride_grid():
    generator = AnchorGenerator(sizes=[[16, 32], [64]], aspect_ratios=[[0.5, 1.0, 2.0]], offset=0.5)
    assert generator.num_anchors_per_cell == [6, 3]
    level0, level1 = generator([(3, 4), (2, 2)], strides=[8, 16])
    assert level0.shape == (3 * 4 * 6, 4) and level1.shape == (2 * 2 * 3, 4)
    widths = level0[:, 2] - level0[:, 0]
    heights = level0[:, 3] - level0[:, 1]
    assert torch.allclose(widths * heights, torch.tensor([16.0**2, 32.0**2] * 3).repeat(12), rtol=1e-5)
    assert torch.allclose(heights / widths, torch.tensor([0.5, 0.5, 1, 1, 2, 2.0]).repeat(12), rtol=1e-5)
    centres = (level0[:, :2] + level0[:, 2:]) / 2
    # row-major cells, anchors fastest: cell (row 1, col 2) starts at anchor (1*4+2)*6
    assert torch.allclose(centres[(1 * 4 + 2) * 6], torch.tensor([2.5 * 8, 1.5 * 8]))
    assert torch.allclose(centres[::6][:4, 0], torch.tensor([4.0, 12.0, 20.0, 28.0]))
    with pytest.raises(ValueError, match="levels"):
        generator([(3, 4)], strides=[8])


def matcher_brute(iou, low, high, low_quality):
    num_gt, num_pred = iou.shape
    labels, matched = [], []
    for p in range(num_pred):
        if num_gt == 0:
            labels.append(NEGATIVE)
            matched.append(0)
            continue
        best = max(range(num_gt), key=lambda g: (iou[g, p], -g))
        matched.append(best)
        v = iou[best, p]
        labels.append(POSITIVE if v >= high else NEGATIVE if v < low else IGNORE)
    if low_quality:
        for g in range(num_gt):
            top = iou[g].max()
            for p in range(num_pred):
                if top > 0 and iou[g, p] == top:
                    labels[p] = POSITIVE
                    matched[p] = g
    return labels, matched


@pytest.mark.parametrize("low_quality", [False, True])
@pytest.mark.parametrize("num_gt", [0, 1, 6])
def test_matcher_matches_brute_force(low_quality, num_gt):
    gt, pred = random_boxes(num_gt, 3), random_boxes(40, 4)
    iou = box_iou(gt, pred)
    result = Matcher(0.3, 0.7, allow_low_quality_matches=low_quality)(iou)
    labels, matched = matcher_brute(iou, 0.3, 0.7, low_quality)
    assert result.labels.tolist() == labels
    positive = result.labels == POSITIVE
    assert result.matched_gt[positive].tolist() == [m for m, lab in zip(matched, labels) if lab == POSITIVE]


def test_matcher_low_quality_gives_every_overlapping_gt_a_positive():
    gt = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]])
    pred = torch.tensor([[0.0, 0, 20, 20], [52, 52, 70, 70], [100, 100, 110, 110]])
    result = Matcher(0.3, 0.7, allow_low_quality_matches=True)(box_iou(gt, pred))
    assert result.labels.tolist() == [POSITIVE, POSITIVE, NEGATIVE]
    assert result.matched_gt[:2].tolist() == [0, 1]
    with pytest.raises(ValueError):
        Matcher(0.7, 0.3)


@pytest.mark.parametrize("num_pos,num_neg", [(100, 1000), (3, 1000), (100, 10), (0, 0)])
def test_sampler_respects_fraction_size_and_never_draws_ignored(num_pos, num_neg):
    labels = torch.cat([torch.ones(num_pos), torch.zeros(num_neg), -torch.ones(50)]).to(torch.int8)
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    pos, neg = BalancedSampler(256, 0.25)(labels, torch.Generator().manual_seed(1))
    assert len(pos) == min(64, num_pos)
    assert len(neg) == min(256 - len(pos), num_neg)
    assert (labels[pos] == POSITIVE).all() and (labels[neg] == NEGATIVE).all()
    assert len(set(pos.tolist())) == len(pos) and len(set(neg.tolist())) == len(neg)


def test_roi_pool_four_by_six_roi_into_three_by_three_bins():
    # a 4 (rows) x 6 (columns) RoI on an 8x8 map: bins of 2 rows x 2 columns... rounded
    # as Fast R-CNN: row edges floor/ceil of k*4/3, column edges of k*6/3
    features = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)
    box = torch.tensor([[1.0, 2.0, 6.0, 5.0]])  # x1=1..x2=6 (6 columns), y1=2..y2=5 (4 rows)
    pooled = roi_pool(features, [box], 3, spatial_scale=1.0)[0, 0]
    rows = [(2, 4), (3, 5), (4, 6)]   # floor(k*4/3)+2 .. ceil((k+1)*4/3)+2
    cols = [(1, 3), (3, 5), (5, 7)]   # floor(k*6/3)+1 .. ceil((k+1)*6/3)+1
    expected = torch.tensor([[features[0, 0, r0:r1, c0:c1].max() for c0, c1 in cols] for r0, r1 in rows])
    assert torch.equal(pooled, expected)
    assert torch.equal(pooled, roi_pool_brute(features[0], box[0], 3, 1.0)[0])


def test_aligned_box_iou_is_the_diagonal_of_box_iou():
    from detseg.ops import aligned_box_iou

    g = torch.Generator().manual_seed(3)
    a = torch.rand(20, 2, generator=g) * 50
    b = torch.rand(20, 2, generator=g) * 50
    boxes1 = torch.cat([a, a + torch.rand(20, 2, generator=g) * 30], 1)
    boxes2 = torch.cat([b, b + torch.rand(20, 2, generator=g) * 30], 1)
    boxes2[0] = boxes1[0]  # identical pair: IoU 1
    expected = box_iou(boxes1, boxes2).diagonal()
    torch.testing.assert_close(aligned_box_iou(boxes1, boxes2), expected)
    assert aligned_box_iou(boxes1[:1], boxes2[:1]).item() == pytest.approx(1.0)
    assert aligned_box_iou(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0
