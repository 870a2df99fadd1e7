"""Box-only models read COCO data without decoding instance masks; mask models keep them."""

from pathlib import Path

from detseg.experiment import build_split, load_experiment
from detseg.mask_loading import skip_unused_masks

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "datasets" / "shapes_coco_mini"
DATA = [f"data.{split}.dataset.{key}={value}" for split in ("train", "val") for key, value in (
    ("ann_file", MINI / "annotations" / "instances_val.json"), ("image_dir", MINI / "val"))]


def _loaded(config: str, *overrides: str):
    cfg = load_experiment(ROOT / "configs" / config, [*DATA, *overrides])
    skip_unused_masks(cfg)
    return cfg


def test_a_box_only_model_reads_coco_without_masks():
    cfg = _loaded("custom/yolo_cpu.yaml")
    assert cfg.data.train.dataset.with_masks is False and cfg.data.val.dataset.with_masks is False
    sample = build_split(cfg, "val")[0]  # no mosaic: the image's own objects
    assert len(sample.gt) > 0 and sample.gt.masks is None


def test_a_mask_model_and_an_explicit_setting_keep_the_masks():
    cfg = _loaded("mask_rcnn/coco.yaml")
    assert "with_masks" not in cfg.data.train.dataset
    sample = build_split(cfg, "val")[0]
    assert len(sample.gt) > 0 and sample.gt.masks is not None and sample.gt.masks.shape[0] == len(sample.gt)
    cfg = _loaded("custom/ssd_cpu.yaml", "data.train.dataset.with_masks=true")
    assert cfg.data.train.dataset.with_masks is True and cfg.data.val.dataset.with_masks is False


def test_a_coco_file_without_segmentation_trains_a_box_only_model(tmp_path):
    import json

    from detseg.experiment import train_from_config

    data = json.loads((MINI / "annotations" / "instances_val.json").read_text())
    for ann in data["annotations"]:
        ann.pop("segmentation", None)
    boxes_only = tmp_path / "boxes.json"
    boxes_only.write_text(json.dumps(data))
    overrides = [f"data.{split}.dataset.{key}={value}" for split in ("train", "val") for key, value in (
        ("ann_file", boxes_only), ("image_dir", MINI / "val"))]
    run_dir, _ = train_from_config(ROOT / "configs" / "custom" / "detect_cpu.yaml",
                                   [*overrides, "train.max_iters=1", f"output_dir={tmp_path / 'run'}"],
                                   progress=False, dry_run=True)
    assert run_dir == tmp_path / "run"
