"""How well anchor shapes cover the ground-truth boxes, and a k-means re-fit when they do not.

This is Ultralytics' autoanchor (YOLOv5 ``check_anchors``) with detseg's matching rule in place
of YOLOv5's width/height-ratio rule:

- **Coverage** (best possible recall, BPR): the fraction of ground-truth boxes for which
  at least one anchor shape, put on the box's centre, reaches IoU >= ``threshold``. Pass the
  IoU from which the model's matcher calls an anchor positive (an RPN's 0.7). Where on the
  anchor grid the box falls is ignored: this is the best recall the shapes allow, and what a
  re-fit of the shapes can change.
- **Re-fit**: :func:`~detseg.ops.kmeans_anchors.kmeans_anchors` (YOLOv2's k-means, ``1 - IoU``
  distance) on the boxes' shapes. For anchors given as sizes x shared aspect ratios (RPN),
  the sizes are fitted (k-means on ``sqrt(w h)`` squares, the ratios are kept); for anchors given
  as ``[w, h]`` pairs (YOLO), the pairs are. k-means maximises the mean IoU, not the share of
  boxes above the threshold, so, as Ultralytics does, the centroids are then evolved
  (:func:`evolve`: random multiplicative mutations, kept when they raise the mean of the
  best IoUs that reach the threshold). The result is sorted small to large and split over
  the levels, as many per level as before.

Callers keep a re-fit only when its coverage is higher (:func:`refit_if_better` does both).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from detseg.ops.kmeans_anchors import kmeans_anchors, shape_iou


def coverage(wh: Tensor, anchor_wh: Tensor, threshold: float) -> float:
    """Best possible recall of ``anchor_wh[K, 2]`` shapes on boxes ``wh[N, 2]`` (both
    ``(width, height)`` in input pixels): the share of boxes whose best centred IoU with an
    anchor is at least ``threshold``. 1.0 when there are no boxes."""
    if len(wh) == 0:
        return 1.0
    best = shape_iou(wh.double(), anchor_wh.double()).max(1).values
    return float((best >= threshold - 1e-9).double().mean())


def size_ratio_shapes(sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[float]) -> Tensor:
    """``[K, 2]`` anchor ``(width, height)`` of every size (all levels) at every ratio
    ``height / width``, each of area ``size ** 2`` (as :class:`~detseg.ops.AnchorGenerator`)."""
    return torch.tensor([[s / math.sqrt(r), s * math.sqrt(r)] for level in sizes for s in level
                         for r in aspect_ratios], dtype=torch.float64)


def split_levels(values: list, per_level: Sequence[int]) -> list[list]:
    """``values`` (sorted small to large) cut into consecutive runs of ``per_level[i]`` items."""
    out, start = [], 0
    for count in per_level:
        out.append(values[start:start + count])
        start += count
    return out


def fitness(wh: Tensor, anchor_wh: Tensor, threshold: float) -> float:
    """Ultralytics' anchor fitness: the mean over boxes of the best centred IoU with an
    anchor, counted only where it reaches ``threshold`` (0 elsewhere)."""
    best = shape_iou(wh, anchor_wh).max(1).values
    return float((best * (best >= threshold)).mean())


def evolve(values: Tensor, score: Callable[[Tensor], float], generations: int = 1000, seed: int = 0,
           mutation_p: float = 0.9, sigma: float = 0.1) -> Tensor:
    """Ultralytics' anchor evolution: each generation multiplies the values by random factors
    (each value changed with probability ``mutation_p``, by ``1 + N(0, 1) x sigma x u``, ``u``
    uniform per generation, clipped to [0.3, 3]) and keeps the mutation when ``score`` rises."""
    generator = torch.Generator().manual_seed(seed)
    best, best_score = values.double().clone(), score(values.double())
    for _ in range(generations):
        factor = torch.ones_like(best)
        while bool((factor == 1).all()):
            changed = torch.rand(best.shape, generator=generator, dtype=torch.float64) < mutation_p
            scale = float(torch.rand((), generator=generator, dtype=torch.float64))
            noise = torch.randn(best.shape, generator=generator, dtype=torch.float64)
            factor = (changed * scale * noise * sigma + 1).clamp(0.3, 3.0)
        candidate = best * factor
        candidate_score = score(candidate)
        if candidate_score > best_score:
            best, best_score = candidate, candidate_score
    return best


def _sample(wh: Tensor, limit: int, seed: int) -> Tensor:
    """At most ``limit`` of the boxes (a seeded random subset) for the evolution's scores."""
    if len(wh) <= limit:
        return wh.double()
    return wh.double()[torch.randperm(len(wh), generator=torch.Generator().manual_seed(seed))[:limit]]


def fit_sizes(wh: Tensor, per_level: Sequence[int], aspect_ratios: Sequence[float], threshold: float,
              seed: int = 0) -> list[list[float]]:
    """Anchor sizes (side of a square of the anchor's area) for anchors of ``per_level[i]``
    sizes x ``aspect_ratios`` on level ``i``: k-means under ``1 - IoU`` on squares of the
    boxes' area (sizes clustered by ratio, not difference), evolved for :func:`fitness` at
    ``threshold``, sorted and split over the levels."""
    side = wh.double().prod(1).sqrt()
    centroids, _ = kmeans_anchors(torch.stack([side, side], 1), sum(per_level), seed=seed)
    boxes = _sample(wh, 10_000, seed)
    sizes = evolve(centroids[:, 0].double(), lambda s: fitness(boxes, size_ratio_shapes([s.tolist()], aspect_ratios),
                                                              threshold), seed=seed)
    return split_levels([round(float(v), 1) for v in sizes.sort().values], per_level)


def fit_shapes(wh: Tensor, per_level: Sequence[int], threshold: float, seed: int = 0) -> list[list[list[float]]]:
    """``[w, h]`` anchors, ``per_level[i]`` on level ``i``: k-means on the boxes' shapes,
    evolved for :func:`fitness` at ``threshold``, sorted by area and split over the levels."""
    centroids, _ = kmeans_anchors(wh, sum(per_level), seed=seed)
    boxes = _sample(wh, 10_000, seed)
    shapes = evolve(centroids.double(), lambda a: fitness(boxes, a, threshold), seed=seed)
    shapes = shapes[shapes.prod(1).argsort()]
    return split_levels([[round(float(w), 1), round(float(h), 1)] for w, h in shapes.tolist()], per_level)


def refit_if_better(wh: Tensor, current: Tensor, candidate: Tensor, threshold: float) -> tuple[float, float, bool]:
    """``(coverage before, coverage of the candidate, keep the candidate)``: the candidate is
    kept only when it covers strictly more boxes."""
    before, after = coverage(wh, current, threshold), coverage(wh, candidate, threshold)
    return before, after, after > before


def default_box_shapes(scales: Sequence[float], aspect_ratios: Sequence[Sequence[float]]) -> Tensor:
    """``[K, 2]`` ``(width, height)`` of every SSD default box shape (fractions of the input
    side): per map ``k``, the squares of side ``s_k`` and ``sqrt(s_k s_{k+1})`` and, per ratio
    ``r``, ``s_k sqrt(r) x s_k / sqrt(r)`` and its transpose (as
    :class:`~detseg.ops.default_boxes.DefaultBoxGenerator`)."""
    shapes = []
    for k, ratios in enumerate(aspect_ratios):
        s, s_next = scales[k], scales[k + 1]
        shapes += [[s, s], [math.sqrt(s * s_next)] * 2]
        for r in ratios:
            shapes += [[s * math.sqrt(r), s / math.sqrt(r)], [s / math.sqrt(r), s * math.sqrt(r)]]
    return torch.tensor(shapes, dtype=torch.float64)


def fit_default_boxes(wh: Tensor, ratios_per_map: Sequence[int], threshold: float,
                      seed: int = 0) -> tuple[list[float], list[list[float]]]:
    """SSD scales ``s_1..s_{m+1}`` and per map ``ratios_per_map[k]`` aspect ratios (each
    ``>= 1``, adding ``r`` and ``1/r``) for boxes ``wh[N, 2]`` given as fractions of the input
    side. Two first guesses, each evolved (:func:`evolve`) for :func:`fitness` at ``threshold``,
    the fitter one kept: the scales at evenly spaced quantiles of the boxes' ``sqrt(w h)``, and
    the scales spaced evenly in log size so that the ``2m`` box sizes (``s_k`` and
    ``sqrt(s_k s_{k+1})``) span the 2nd to 98th percentile. On sizes spread over two decades
    (people near and far) the quantile guess leaves the largest boxes out and evolution does not
    recover them. Each map's ratios start at quantiles of ``max(w/h, h/w)`` of the boxes nearest
    its scale. Scales come out sorted, small on the first (finest) map."""
    m, wh = len(ratios_per_map), wh.double()
    size, elongation = wh.prod(1).sqrt(), (wh[:, 0] / wh[:, 1]).maximum(wh[:, 1] / wh[:, 0])
    low, high = torch.quantile(size, 0.02).clamp(min=1e-3), torch.quantile(size, 0.98).clamp(min=1e-3)
    step = (high / low) ** (1 / (2 * m - 1))
    first_guesses = [
        torch.quantile(size, (torch.arange(m + 1, dtype=torch.float64) + 0.5) / (m + 1)),
        low * step ** (2 * torch.arange(m + 1, dtype=torch.float64)),
    ]
    boxes = _sample(wh, 10_000, seed)

    def start_from(scales: Tensor) -> Tensor:
        nearest = (size[:, None].log() - scales[None, :m].log()).abs().argmin(1)
        ratios = []
        for k, count in enumerate(ratios_per_map):
            mine = elongation[nearest == k] if bool((nearest == k).any()) else elongation
            ratios.append(torch.quantile(mine, torch.arange(1, count + 1, dtype=torch.float64) / (count + 1)))
        return torch.cat([scales, *ratios]).clamp(min=1e-3)

    def unpack(values: Tensor) -> tuple[list[float], list[list[float]]]:
        scales_, rest, out = values[:m + 1].sort().values.tolist(), values[m + 1:].tolist(), []
        for count in ratios_per_map:
            out.append([max(r, 1 / r) for r in rest[:count]])
            rest = rest[count:]
        return scales_, out

    def score(values: Tensor) -> float:
        return fitness(boxes, default_box_shapes(*unpack(values)), threshold)

    best = max((evolve(start_from(scales), score, seed=seed) for scales in first_guesses), key=score)
    scales_, ratios_ = unpack(best)
    return [round(s, 4) for s in scales_], [[round(r, 3) for r in level] for level in ratios_]
