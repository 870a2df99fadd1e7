"""SSD default boxes fitted to the data: the shapes are the generator's, and a fit on tall
boxes finds their sizes and elongation."""

import torch

from detseg.ops.anchor_fit import coverage, default_box_shapes, fit_default_boxes
from detseg.ops.default_boxes import DefaultBoxGenerator


def test_default_box_shapes_are_the_generators_cell_shapes():
    scales, ratios = [0.1, 0.25, 0.5, 0.8], [[2], [2, 3], []]
    generator = DefaultBoxGenerator(ratios, scales=scales)
    expected = [shape for k in range(3) for shape in generator.cell_shapes(k)]
    torch.testing.assert_close(default_box_shapes(scales, ratios), torch.tensor(expected, dtype=torch.float64))


def test_a_fit_on_tall_boxes_finds_their_elongation_and_covers_more():
    generator = torch.Generator().manual_seed(0)
    size = torch.rand(400, 1, generator=generator, dtype=torch.float64) * 0.3 + 0.1  # sqrt(w h): 0.1..0.4
    elongation = 3.0 * (0.9 + 0.2 * torch.rand(400, 1, generator=generator, dtype=torch.float64))
    wh = torch.cat([size / elongation.sqrt(), size * elongation.sqrt()], 1)  # h = 3 w, pedestrians
    shapes_config = default_box_shapes([0.15, 0.2667, 0.3833, 0.5], [[2], [2], [2]])
    scales, ratios = fit_default_boxes(wh, [1, 1, 1], 0.5)
    assert scales == sorted(scales) and 0.05 < scales[0] < 0.2 and 0.3 < scales[2] < 0.6
    assert all(2.4 < level[0] < 3.6 for level in ratios)
    before, after = coverage(wh, shapes_config, 0.5), coverage(wh, default_box_shapes(scales, ratios), 0.5)
    assert after > before and after > 0.95


def test_a_fit_on_sizes_over_two_decades_reaches_the_largest_boxes():
    # People near and far: sqrt(w h) log-uniform over 0.01..0.8 of the input, tall. Started
    # from size quantiles alone, the evolution kept every default box under 0.25 of the input
    # (coverage 0.646); the log-spaced first guess reaches the large ones.
    generator = torch.Generator().manual_seed(0)
    size = 0.01 * 80 ** torch.rand(500, 1, generator=generator, dtype=torch.float64)
    elongation = 1.5 + 1.5 * torch.rand(500, 1, generator=generator, dtype=torch.float64)
    wh = torch.cat([size / elongation.sqrt(), size * elongation.sqrt()], 1)
    scales, ratios = fit_default_boxes(wh, [2, 2, 2], 0.5)
    shapes = default_box_shapes(scales, ratios)
    assert float(shapes.prod(1).sqrt().max()) > 0.5
    assert coverage(wh, shapes, 0.5) > 0.7
