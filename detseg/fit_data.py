"""Settings an experiment leaves to its training data (the ``fit`` section), settled before training.

The configs for your own data (``configs/custom/``) name no image size and take the model's
anchors as a first guess; this module fits both to the data set the run is given:

- **image size** (``fit.image_size: null``): the median longest side of the training images,
  rounded up to a multiple of 32 and capped at ``fit.max_image_size`` (CPU-sized). The
  config's transforms read it by interpolation (``max_size: ${fit.image_size}``);
- **anchors** (``fit.anchors: fit``): the share of training boxes that the model's anchor
  shapes cover at the matcher's IoU (:mod:`detseg.ops.anchor_fit`) is printed; below
  ``fit.min_coverage`` (0.98) the anchors are re-fitted (k-means, then evolved as Ultralytics
  does) and used when they cover
  more, both numbers printed. An SSD head's default boxes are anchors too: their
  ``scales`` and ``aspect_ratios`` are re-fitted (quantiles of the boxes' sizes and
  elongations, then evolved), as many ratios per map as configured. The boxes are measured in model input pixels (the training
  split's resizing transforms and the model's own resize applied to each image's size);
- the class count is the data set's already (:func:`detseg.experiment.build_model_for`).

What is found is written into the config, so the run's ``config.yaml`` and its checkpoints
hold it and rebuild the same model; :func:`adopt_fitted` takes it from a checkpoint's config
when a custom YAML is evaluated.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Literal

import torch
from omegaconf import DictConfig, open_dict

import detseg.models  # noqa: F401 - registers the proposal sources and heads whose defaults are read
from detseg.config import PositiveInt, UnitInterval, build_section, builder_signature, to_plain
from detseg.data import DetectionDataset, build_dataset
from detseg.ops.anchor_fit import (
    coverage,
    default_box_shapes,
    fit_default_boxes,
    fit_shapes,
    fit_sizes,
    refit_if_better,
    size_ratio_shapes,
)
from detseg.ops.default_boxes import ssd_scales
from detseg.registry import DENSE_HEADS, PROPOSAL_SOURCES

SIZE_MULTIPLE = 32
"""Derived image sizes are multiples of the coarsest backbone stride."""
MAX_SIZE_SAMPLE = 500
"""Images whose size must be read from the file (label-map folders): at most this many, evenly spaced."""


@dataclass
class FitConfig:
    """The ``fit`` section: what to derive from the training data before training.

    ``image_size``: the side the transforms resize to (read as ``${fit.image_size}``); null:
    the median longest side of the training images, a multiple of 32, at most
    ``max_image_size``. ``anchors``: ``fit`` prints the anchors' coverage of the training
    boxes and re-fits them when it is below ``min_coverage``; ``check`` only prints it;
    ``keep`` does neither."""

    image_size: PositiveInt | None = None
    max_image_size: PositiveInt = 512
    anchors: Literal["fit", "check", "keep"] = "fit"
    min_coverage: UnitInterval = 0.98


def fit_settings(cfg: DictConfig) -> FitConfig | None:
    """The config's ``fit`` section, or None when it has none."""
    return build_section(FitConfig, cfg.fit, "fit") if cfg.get("fit") is not None else None


def settle_image_size(cfg: DictConfig, say=print) -> None:
    """Set ``fit.image_size`` from the data when the config leaves it null: from ``data.train``
    when the config has it, else from the first split it has."""
    fit = fit_settings(cfg)
    if fit is None or fit.image_size is not None:
        return
    split = next((s for s in ("train", "val", "test") if cfg.data.get(s) is not None), None)
    if split is None:
        return
    node = {**to_plain(cfg.data[split]), "transforms": [], "close_mosaic": 0}
    sides = [max(h, w) for h, w in image_sizes(build_dataset(node, f"data.{split}"))]
    median = statistics.median(sides)
    size = min(fit.max_image_size, SIZE_MULTIPLE * math.ceil(median / SIZE_MULTIPLE))
    with open_dict(cfg):
        cfg.fit.image_size = size
    say(f"fit: image size {size}: the median longest side of {len(sides)} data.{split} images is {median:g} "
        f"pixels, rounded up to a multiple of {SIZE_MULTIPLE}, at most fit.max_image_size={fit.max_image_size} "
        f"(set fit.image_size to choose)")


def image_sizes(dataset: DetectionDataset) -> list[tuple[int, int]]:
    """``(height, width)`` of the data set's images, from its annotations where they say,
    else read from (at most :data:`MAX_SIZE_SAMPLE`) image files."""
    entries = getattr(dataset, "entries", None)
    if entries and all(e.height > 0 and e.width > 0 for e in entries):
        return [(e.height, e.width) for e in entries]
    step = max(1, len(dataset) // MAX_SIZE_SAMPLE)
    return [(s.height, s.width) for s in (dataset.summary(i) for i in range(0, len(dataset), step))]


@dataclass
class AnchorSpec:
    """Where a model config keeps its anchors, their shapes, and the IoU that counts as covered."""

    key: str
    current: Any
    shapes: torch.Tensor
    threshold: float
    threshold_name: str
    per_level: list[int]
    ratios: list[float] | None = None  # size x ratio anchors (RPN); None: [w, h] pairs (YOLO)
    side: float | None = None  # SSD default boxes: the input side their fractions are of


def _setting(node: Any, registry, key: str) -> Any:
    """``node[key]``, or the default of the builder the node names."""
    if key in node:
        return node[key]
    return builder_signature(registry.get(node["name"]))[0][key].default


def anchor_spec(model: dict) -> AnchorSpec | None:
    """The anchors of a model config (plain dict): an RPN's sizes x ratios, a YOLO head's
    ``[w, h]`` pairs, or an SSD head's default boxes (``current``: ``{scales, aspect_ratios}``,
    ``per_level``: ratios per map); None for models without anchors of those kinds."""
    source, head = model.get("proposal_source") or {}, model.get("head") or {}
    if source.get("name") == "rpn":
        sizes = [list(level) for level in source["anchor_sizes"]]
        ratios = list(_setting(source, PROPOSAL_SOURCES, "aspect_ratios"))
        high = _setting(source, PROPOSAL_SOURCES, "iou_thresholds")[1]
        return AnchorSpec("model.proposal_source.anchor_sizes", sizes, size_ratio_shapes(sizes, ratios), high,
                          "the RPN matcher's positive IoU", [len(level) for level in sizes], ratios)
    if head.get("name") == "yolo":
        pairs = [[list(wh) for wh in level] for level in head["anchors"]]
        shapes = torch.tensor([wh for level in pairs for wh in level], dtype=torch.float64)
        threshold = _setting(head, DENSE_HEADS, "ignore_threshold")
        return AnchorSpec("model.head.anchors", pairs, shapes, threshold, "the YOLO head's ignore_threshold",
                          [len(level) for level in pairs])
    if head.get("name") == "ssd":
        ratios = [list(level) for level in head["aspect_ratios"]]
        scales = head.get("scales") or ssd_scales(len(ratios), _setting(head, DENSE_HEADS, "min_scale"),
                                                  _setting(head, DENSE_HEADS, "max_scale"))
        resize = model.get("resize") or {}
        side = model.get("input_size") or max(resize.get("fixed_size") or [resize.get("max_size") or 0])
        return AnchorSpec("model.head.scales/aspect_ratios", {"scales": list(scales), "aspect_ratios": ratios},
                          default_box_shapes(scales, ratios) * side, _setting(head, DENSE_HEADS, "iou_threshold"),
                          "the SSD matcher's iou_threshold", [len(level) for level in ratios], side=side)
    return None


def fit_anchors(cfg: DictConfig, dataset: DetectionDataset, say=print) -> None:
    """Print how well the model's anchors cover ``dataset``'s boxes; with ``fit.anchors: fit``
    and a coverage below ``fit.min_coverage``, re-fit them (k-means, then evolved) and write them into
    the config when they cover more."""
    fit = fit_settings(cfg)
    if fit is None or fit.anchors == "keep" or cfg.get("model") is None or not dataset.has_instances:
        return
    model = to_plain(cfg.model)
    spec = anchor_spec(model)
    if spec is None:
        return
    wh = box_shapes(cfg, dataset)
    before = coverage(wh, spec.shapes, spec.threshold)
    say(f"fit: anchor coverage {before:.4f}: the share of {len(wh)} training boxes (in {_input_note(cfg)}) with "
        f"an anchor shape at IoU >= {spec.threshold:g} ({spec.threshold_name}); {spec.key}={spec.current}")
    if fit.anchors == "check" or before >= fit.min_coverage:
        return
    k = sum(spec.per_level) if spec.side is None else sum(spec.per_level) + len(spec.per_level) + 1
    if len(wh) < k:
        say(f"fit: {len(wh)} training boxes are too few to fit {k} anchors; the configured anchors are kept")
        return
    if spec.side is not None:
        scales, ratios = fit_default_boxes(wh / spec.side, spec.per_level, spec.threshold, seed=cfg.get("seed", 0))
        fitted = {"scales": scales, "aspect_ratios": ratios}
        candidate = default_box_shapes(scales, ratios) * spec.side
    elif spec.ratios is not None:
        fitted = fit_sizes(wh, spec.per_level, spec.ratios, spec.threshold, seed=cfg.get("seed", 0))
        candidate = size_ratio_shapes(fitted, spec.ratios)
    else:
        fitted = fit_shapes(wh, spec.per_level, spec.threshold, seed=cfg.get("seed", 0))
        candidate = torch.tensor([wh_ for level in fitted for wh_ in level], dtype=torch.float64)
    before, after, better = refit_if_better(wh, spec.shapes, candidate, spec.threshold)
    how = "size quantiles or log spacing + evolution" if spec.side is not None else "k-means + evolution"
    if not better:
        say(f"fit: anchors re-fitted ({how}) cover {after:.4f}, not more than {before:.4f}; "
            f"the configured anchors are kept")
        return
    _write_anchors(cfg, spec, fitted)
    say(f"fit: anchors re-fitted ({how}): coverage {before:.4f} -> {after:.4f}; {spec.key}={fitted} "
        f"(fit.anchors=keep uses the configured ones)")


def _write_anchors(cfg: DictConfig, spec: AnchorSpec, fitted: Any) -> None:
    """Put ``fitted`` anchors of ``spec``'s kind into the model config."""
    with open_dict(cfg):
        if spec.side is not None:
            cfg.model.head.scales, cfg.model.head.aspect_ratios = fitted["scales"], fitted["aspect_ratios"]
        elif spec.ratios is not None:
            cfg.model.proposal_source.anchor_sizes = fitted
        else:
            cfg.model.head.anchors = fitted


def box_shapes(cfg: DictConfig, dataset: DetectionDataset) -> torch.Tensor:
    """``[N, 2]`` widths and heights of the data set's boxes (crowd / difficult ones left
    out), in model input pixels: see :func:`input_scale`."""
    data = to_plain(cfg.data)
    transforms = (data.get("train") or {}).get("transforms") or []
    model = to_plain(cfg.model) if cfg.get("model") is not None else {}
    shapes = []
    for height, width, boxes in _sized_boxes(dataset):
        sx, sy = input_scale(transforms, model, height, width)
        shapes += [[(x1 - x0) * sx, (y1 - y0) * sy] for x0, y0, x1, y1 in boxes]
    wh = torch.tensor(shapes, dtype=torch.float64).reshape(-1, 2)
    return wh[(wh > 0).all(1)]


def _sized_boxes(dataset: DetectionDataset):
    """``(height, width, xyxy boxes)`` of each image, from the annotations as stored."""
    entries = getattr(dataset, "entries", None)
    if entries and all(e.height > 0 and e.width > 0 for e in entries):
        for e in entries:
            yield e.height, e.width, [list(a.box) for a in e.annotations if not a.iscrowd]
        return
    gt = dataset.coco_ground_truth()
    boxes: dict[int, list] = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd"):
            x, y, w, h = a["bbox"]
            boxes.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    for image in gt["images"]:
        yield image["height"], image["width"], boxes.get(image["id"], [])


def input_scale(transforms: list[dict], model: dict, height: float, width: float) -> tuple[float, float]:
    """``(x, y)`` scale from an image of ``height x width`` to the model input: the resizing
    transforms of the training split in order (``longest_max_size``, ``smallest_max_size``,
    ``resize``, ``mosaic``; random ones are taken at scale 1), then the model's own ``input_size`` or
    ``resize``."""
    h, w = float(height), float(width)
    for node in transforms:
        name = node.get("name")
        if name == "mosaic":  # each image to a longest side of `size`, as longest_max_size
            name, node = "longest_max_size", {"max_size": node.get("size")}
        if name in ("longest_max_size", "smallest_max_size") and node.get("max_size") is not None:
            target = node["max_size"]
            target = statistics.mean(target) if isinstance(target, list) else float(target)
            s = target / (max(h, w) if name == "longest_max_size" else min(h, w))
            h, w = h * s, w * s
        elif name == "resize":
            h, w = float(node["height"]), float(node["width"])
    resize = model.get("resize") or {}
    if model.get("input_size"):
        h = w = float(model["input_size"])
    elif resize.get("fixed_size"):
        h, w = map(float, resize["fixed_size"])
    elif resize.get("min_size"):
        low = resize["min_size"][-1] if isinstance(resize["min_size"], list) else resize["min_size"]
        s = min(low / min(h, w), resize["max_size"] / max(h, w))
        h, w = h * s, w * s
    return w / width, h / height


def _input_note(cfg: DictConfig) -> str:
    model = cfg.get("model") or {}
    if model.get("input_size"):
        return f"{model.input_size} x {model.input_size} model input pixels"
    size = cfg.fit.get("image_size")
    return f"input pixels, longest side {size}" if size else "input pixels"


def adopt_fitted(cfg: DictConfig, trained: dict[str, Any] | None) -> None:
    """Take the fitted image size and anchors of a checkpoint's resolved config (``trained``)
    into ``cfg``, a custom YAML being evaluated with that checkpoint."""
    if cfg.get("fit") is None or not trained or not trained.get("fit"):
        return
    with open_dict(cfg):
        if cfg.fit.get("image_size") is None:
            cfg.fit.image_size = trained["fit"].get("image_size")
        spec = anchor_spec(trained.get("model") or {})
        if spec is not None and anchor_spec(to_plain(cfg.model)) is not None:
            _write_anchors(cfg, spec, spec.current)
