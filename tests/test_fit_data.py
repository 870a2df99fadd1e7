"""What the custom configs derive from the data before training: image size and anchors
(the autoanchor check prints the coverage before and after a re-fit), and taking them back
from a checkpoint's config."""

from pathlib import Path

import pytest

from detseg.errors import ConfigError
from detseg.experiment import build_split, load_experiment
from detseg.fit_data import adopt_fitted, anchor_spec, box_shapes, fit_anchors, input_scale
from detseg.ops.anchor_fit import coverage

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "datasets" / "shapes_coco_mini"
DETECT = ROOT / "configs" / "custom" / "detect_cpu.yaml"
COCO_MINI = [f"data.{split}.dataset.{key}={value}" for split in ("train", "val") for key, value in (
    ("ann_file", MINI / "annotations" / "instances_val.json"), ("image_dir", MINI / "val"))]
HUGE = "model.proposal_source.anchor_sizes=[[256,384],[512,768],[1024,1536]]"


def fitted(overrides):
    """The config after the image size (by building the training split) and the anchors are
    fitted, the printed lines, and the training set."""
    cfg = load_experiment(DETECT, [*COCO_MINI, *overrides])
    lines = []
    dataset = build_split(cfg, "train")
    fit_anchors(cfg, dataset, say=lines.append)
    return cfg, lines, dataset


def test_image_size_is_the_median_longest_side_rounded_up_and_capped():
    cfg = load_experiment(DETECT, COCO_MINI)
    assert cfg.fit.image_size is None
    build_split(cfg, "train")
    assert cfg.fit.image_size == 128  # the shapes images are 128 x 128
    cfg = load_experiment(DETECT, [*COCO_MINI, "fit.max_image_size=96"])
    build_split(cfg, "val")
    assert cfg.fit.image_size == 96
    cfg = load_experiment(DETECT, [*COCO_MINI, "fit.image_size=200"])
    assert build_split(cfg, "train")[0].image.shape[-2:] == (200, 200)  # given: used as it is


def test_anchors_wrong_for_the_data_are_refitted_and_both_coverages_printed():
    cfg, lines, dataset = fitted([HUGE])
    assert lines[0].startswith("fit: anchor coverage 0.0000") and "IoU >= 0.7" in lines[0]
    assert lines[1].startswith("fit: anchors re-fitted (k-means + evolution): coverage 0.0000 -> ")
    sizes = [list(level) for level in cfg.model.proposal_source.anchor_sizes]
    assert sizes != [[256, 384], [512, 768], [1024, 1536]] and max(max(level) for level in sizes) < 128
    spec = anchor_spec({"proposal_source": {"name": "rpn", "anchor_sizes": sizes}})
    after = coverage(box_shapes(cfg, dataset), spec.shapes, 0.7)
    assert f"-> {after:.4f}" in lines[1] and after > 0.5


def test_anchors_that_cover_the_boxes_are_kept():
    cfg, lines, _ = fitted([HUGE])
    good = [list(level) for level in cfg.model.proposal_source.anchor_sizes]  # covering, as just fitted
    flow = "[" + ",".join("[" + ",".join(str(s) for s in level) + "]" for level in good) + "]"
    cfg, lines, _ = fitted([f"model.proposal_source.anchor_sizes={flow}"])
    assert len(lines) == 1 and lines[0].startswith("fit: anchor coverage 1.0000")
    assert [list(level) for level in cfg.model.proposal_source.anchor_sizes] == good


def test_check_and_keep_only_look_or_do_nothing():
    cfg, lines, _ = fitted([HUGE, "fit.anchors=check"])
    assert len(lines) == 1 and "coverage 0.0000" in lines[0]
    assert list(cfg.model.proposal_source.anchor_sizes[0]) == [256, 384]
    cfg, lines, _ = fitted([HUGE, "fit.anchors=keep"])
    assert lines == []


def test_yolo_anchors_are_checked_at_the_heads_ignore_threshold_and_refitted():
    cfg = load_experiment(ROOT / "configs/yolo/shapes.yaml", [
        "+fit.anchors=fit", "data.train.dataset.num_images=32",
        "model.head.anchors=[[[300,300]],[[400,400]],[[500,500]]]"])
    lines = []
    fit_anchors(cfg, build_split(cfg, "train"), say=lines.append)
    assert "coverage 0.0000" in lines[0] and "ignore_threshold" in lines[0]
    assert "re-fitted" in lines[1]
    anchors = [[list(wh) for wh in level] for level in cfg.model.head.anchors]
    assert [len(level) for level in anchors] == [1, 1, 1] and anchors[2][0][0] < 128


def test_boxes_are_measured_in_model_input_pixels():
    assert input_scale([{"name": "longest_max_size", "max_size": 320}], {}, 480, 640) == (0.5, 0.5)
    assert input_scale([{"name": "smallest_max_size", "max_size": 240}], {}, 480, 640) == (0.5, 0.5)
    assert input_scale([], {"input_size": 128}, 64, 256) == (0.5, 2.0)
    assert input_scale([{"name": "horizontal_flip"}], {"resize": {"min_size": 240, "max_size": 1000}},
                       480, 640) == (0.5, 0.5)


def test_a_custom_yaml_evaluated_with_a_checkpoint_takes_its_fitted_settings():
    cfg = load_experiment(DETECT, COCO_MINI)
    trained = {"fit": {"image_size": 96}, "model": {"proposal_source": {
        "name": "rpn", "anchor_sizes": [[10, 12], [20, 24], [40, 48]]}}}
    adopt_fitted(cfg, trained)
    assert cfg.fit.image_size == 96
    assert [list(level) for level in cfg.model.proposal_source.anchor_sizes] == [[10, 12], [20, 24], [40, 48]]


def test_fit_values_are_validated_by_key():
    with pytest.raises(ConfigError, match=r"fit.min_coverage: 1.5 is out of range"):
        load_experiment(DETECT, [*COCO_MINI, "fit.min_coverage=1.5"])
    with pytest.raises(ConfigError, match=r"fit.anchors: 'refit' is not one of"):
        load_experiment(DETECT, [*COCO_MINI, "fit.anchors=refit"])
    with pytest.raises(ConfigError, match=r"fit.image_size: 0 is out of range"):
        load_experiment(DETECT, [*COCO_MINI, "fit.image_size=0"])


def test_ssd_default_boxes_wrong_for_the_data_are_refitted_and_the_model_builds_with_them():
    from detseg.experiment import build_model_for
    from detseg.ops.anchor_fit import default_box_shapes

    # the shapes objects are 19..51 px of 128; default boxes of 0.8..1.0 of the input and 4:1 cover none
    wrong = ["model.head.aspect_ratios=[[4],[4],[4]]", "+model.head.scales=[0.8,0.85,0.9,1.0]"]
    cfg = load_experiment(ROOT / "configs/ssd/shapes.yaml", ["+fit.anchors=fit", "data.train.dataset.num_images=32",
                                                             *wrong])
    dataset = build_split(cfg, "train")
    lines = []
    fit_anchors(cfg, dataset, say=lines.append)
    assert lines[0].startswith("fit: anchor coverage 0.0000") and "SSD matcher's iou_threshold" in lines[0]
    assert "IoU >= 0.5" in lines[0] and "re-fitted (size quantiles or log spacing + evolution): coverage 0.0000 -> " in lines[1]
    scales, ratios = list(cfg.model.head.scales), [list(r) for r in cfg.model.head.aspect_ratios]
    assert len(scales) == 4 and scales == sorted(scales) and scales[0] < 0.3
    assert [len(r) for r in ratios] == [1, 1, 1] and all(r >= 1 for level in ratios for r in level)
    after = coverage(box_shapes(cfg, dataset), default_box_shapes(scales, ratios) * 128, 0.5)
    assert f"-> {after:.4f}" in lines[1] and after > 0.9
    model = build_model_for(cfg, dataset)
    assert model.head.default_boxes.scales == scales
    # fitted boxes that cover the data are kept as they are
    fitted = [f"model.head.aspect_ratios={ratios}", f"+model.head.scales={scales}"]
    cfg = load_experiment(ROOT / "configs/ssd/shapes.yaml", ["+fit.anchors=fit", "data.train.dataset.num_images=32",
                                                             "fit.min_coverage=0.5", *fitted])
    lines = []
    fit_anchors(cfg, build_split(cfg, "train"), say=lines.append)
    assert len(lines) == 1 and list(cfg.model.head.scales) == scales


def test_mosaic_sizes_the_boxes_as_longest_max_size_does():
    assert input_scale([{"name": "mosaic", "size": 320}], {}, 480, 640) == (0.5, 0.5)


def test_a_custom_ssd_yaml_evaluated_with_a_checkpoint_takes_its_fitted_default_boxes():
    cfg = load_experiment(ROOT / "configs/custom/ssd_cpu.yaml", COCO_MINI)
    fitted = {"scales": [0.1, 0.2, 0.4, 0.8], "aspect_ratios": [[1.5, 3.0], [2.0, 2.5], [1.7, 2.7]]}
    adopt_fitted(cfg, {"fit": {"image_size": 96}, "model": {"input_size": None, "resize": {"max_size": 96},
                                                             "head": {"name": "ssd", **fitted}}})
    assert cfg.fit.image_size == 96 and list(cfg.model.head.scales) == fitted["scales"]
    assert [list(r) for r in cfg.model.head.aspect_ratios] == fitted["aspect_ratios"]
