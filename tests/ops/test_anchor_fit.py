"""Anchor coverage (best possible recall at the matcher's IoU) and the k-means re-fit."""

import math

import pytest
import torch

from detseg.ops import AnchorGenerator
from detseg.ops.anchor_fit import (
    coverage,
    evolve,
    fit_shapes,
    fit_sizes,
    refit_if_better,
    size_ratio_shapes,
    split_levels,
)


def brute_force_coverage(wh, anchors, threshold):
    """Per box, the IoU of two boxes sharing a centre, written out with min/max."""
    covered = 0
    for w, h in wh.tolist():
        best = max(min(w, a) * min(h, b) / (w * h + a * b - min(w, a) * min(h, b)) for a, b in anchors.tolist())
        covered += best >= threshold
    return covered / len(wh)


def test_coverage_is_the_share_of_boxes_with_a_close_enough_anchor_shape():
    generator = torch.Generator().manual_seed(0)
    wh = torch.rand(200, 2, generator=generator, dtype=torch.float64) * 90 + 10
    anchors = torch.tensor([[16.0, 16.0], [32.0, 64.0], [64.0, 32.0], [80.0, 80.0]], dtype=torch.float64)
    for threshold in (0.3, 0.5, 0.7):
        assert coverage(wh, anchors, threshold) == pytest.approx(brute_force_coverage(wh, anchors, threshold))
    assert coverage(torch.tensor([[16.0, 16.0]]), anchors, 1.0) == 1.0  # an exact fit counts at IoU 1
    assert coverage(torch.zeros(0, 2), anchors, 0.7) == 1.0


def test_size_ratio_shapes_are_the_anchor_generator_cells():
    sizes, ratios = [[16, 24], [32, 48]], [0.5, 1.0, 2.0]
    cells = AnchorGenerator(sizes, [ratios]).cell_anchors
    from_generator = torch.cat([c[:, 2:] - c[:, :2] for c in cells]).double()
    ours = size_ratio_shapes(sizes, ratios)
    # the generator varies sizes fastest within a level; compare as sets of shapes
    assert torch.allclose(torch.tensor(sorted(from_generator.tolist())), torch.tensor(sorted(ours.tolist())))
    assert torch.allclose(ours.prod(1), torch.tensor([s * s for lv in sizes for s in lv for _ in ratios]).double())


def test_split_levels_keeps_the_per_level_counts():
    assert split_levels([1, 2, 3, 4, 5, 6], [2, 2, 2]) == [[1, 2], [3, 4], [5, 6]]
    assert split_levels([1, 2, 3], [1, 2]) == [[1], [2, 3]]


def test_a_refit_of_huge_anchors_on_tiny_boxes_covers_them_and_is_kept():
    generator = torch.Generator().manual_seed(1)
    side = torch.rand(300, 1, generator=generator, dtype=torch.float64) * 12 + 8  # 8..20 px squares
    wh = torch.cat([side, side * (0.8 + 0.4 * torch.rand(300, 1, generator=generator, dtype=torch.float64))], 1)
    huge = [[256, 384], [512, 768], [1024, 1536]]
    current = size_ratio_shapes(huge, [0.5, 1.0, 2.0])
    fitted = fit_sizes(wh, [2, 2, 2], [0.5, 1.0, 2.0], 0.7)
    assert [len(level) for level in fitted] == [2, 2, 2]
    flat = [s for level in fitted for s in level]
    assert flat == sorted(flat) and 8 <= flat[0] and flat[-1] <= 20
    before, after, keep = refit_if_better(wh, current, size_ratio_shapes(fitted, [0.5, 1.0, 2.0]), 0.7)
    assert before == 0.0 and after > 0.9 and keep


def test_anchors_that_fit_are_not_replaced_by_a_refit_that_covers_no_more():
    wh = torch.tensor([[16.0, 16.0], [32.0, 32.0], [64.0, 64.0]] * 10, dtype=torch.float64)
    right = torch.tensor([[16.0, 16.0], [32.0, 32.0], [64.0, 64.0]], dtype=torch.float64)
    before, after, keep = refit_if_better(wh, right, torch.tensor([[40.0, 40.0]] * 3, dtype=torch.float64), 0.7)
    assert before == 1.0 and after < 1.0 and not keep
    assert refit_if_better(wh, right, right, 0.7) == (1.0, 1.0, False)  # equal coverage: the configured ones stay


def test_fit_shapes_gives_wh_pairs_per_level_sorted_by_area():
    generator = torch.Generator().manual_seed(2)
    wh = torch.rand(100, 2, generator=generator) * 50 + 5
    fitted = fit_shapes(wh, [3, 3], 0.5)
    areas = [w * h for level in fitted for w, h in level]
    assert [len(level) for level in fitted] == [3, 3] and areas == sorted(areas)
    assert all(math.isfinite(v) and v > 0 for level in fitted for pair in level for v in pair)


def test_evolution_keeps_only_mutations_that_score_higher():
    target = torch.tensor([3.0, 30.0], dtype=torch.float64)
    start = torch.tensor([10.0, 10.0], dtype=torch.float64)
    scores = []

    def score(values):
        value = -float((values.log() - target.log()).abs().sum())
        scores.append(value)
        return value

    best = evolve(start, score, generations=300)
    assert torch.allclose(best, target, rtol=0.05)
    assert evolve(start, lambda v: 0.0, generations=50).tolist() == start.tolist()  # nothing better: unchanged
