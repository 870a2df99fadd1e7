from pathlib import Path

import pytest

from detseg.config import (
    CONFIG_GROUPS,
    Component,
    Range,
    build,
    builder_signature,
    load_config,
    validate,
)
from detseg.errors import ConfigError
from detseg.experiment import build_evaluator, build_split, load_experiment
from detseg.registry import DATASETS, Registry, UnknownNameError

ROOT = Path(__file__).resolve().parent.parent
ALL_CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: p.name)
def test_every_experiment_config_composes_validates_and_builds(path):
    cfg = load_experiment(path, ["data.val.dataset.num_images=4"])
    dataset = build_split(cfg, "val")
    evaluator = build_evaluator(cfg, dataset)
    assert len(dataset) == 4 and hasattr(evaluator, "compute")


def test_group_configs_validate_as_sections():
    for path in sorted((ROOT / "configs" / "evaluator").glob("*.yaml")):
        cfg = load_experiment(ROOT / "configs/default.yaml", [f"evaluator={path.stem}"])
        assert cfg.evaluator.name == path.stem


def test_override_typo_names_the_nearest_key():
    with pytest.raises(ConfigError, match=r"data\.val: unexpected key 'batch_sise' \(did you mean 'batch_size'\?\)"):
        load_experiment(ROOT / "configs/default.yaml", ["data.val.batch_sise=4"])


def test_override_may_set_a_key_the_yaml_leaves_to_its_default():
    cfg = load_experiment(ROOT / "configs/default.yaml", ["data.val.num_workers=1", "data.val.dataset.max_objects=2"])
    assert cfg.data.val.num_workers == 1 and cfg.data.val.dataset.max_objects == 2


@pytest.mark.parametrize("override,message", [
    ("data.val.dataset.num_imags=3", r"default\.yaml: data\.val\.dataset: unexpected key 'num_imags'.*did you mean 'num_images'"),
    ("data.val.batch_size=abc", r"data\.val\.batch_size: expected int, got str 'abc'"),
    ("seed=0.5", r"seed: expected int, got float"),
    ("evaluator.iou_type=box", r"evaluator\.iou_type: 'box' is not one of \['bbox', 'segm', 'bbox\+segm'\].*did you mean 'bbox'"),
    ("+trian=1", r"<root>: unexpected key 'trian'"),
    ("data.train.transforms=[{name: horizontal_flip, pp: 1}]", r"transforms\[0\]: unexpected key 'pp'.*did you mean 'p'"),
])
def test_bad_values_fail_before_anything_is_built(override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(ROOT / "configs/default.yaml", [override])


@pytest.mark.parametrize("override,message", [
    ("data.train.batch_size=0", r"data\.train\.batch_size: 0 is out of range; allowed: \[1, inf\)"),
    ("data.val.num_workers=-1", r"data\.val\.num_workers: -1 is out of range; allowed: \[0, inf\)"),
    ("train.max_iters=0", r"train\.max_iters: 0 is out of range"),
    ("train.optimizer.lr=0", r"train\.optimizer\.lr: 0 is out of range; allowed: \(0, inf\)"),
    ("train.optimizer.lr=-0.01", r"train\.optimizer\.lr: -0\.01 is out of range"),
    ("train.optimizer.momentum=1.5", r"train\.optimizer\.momentum: 1\.5 is out of range; allowed: \[0, 1\]"),
    ("train.schedule.warmup_iters=-5", r"train\.schedule\.warmup_iters: -5 is out of range"),
    ("+train.ema.decay=1.01", r"train\.ema\.decay: 1\.01 is out of range"),
    ("model.roi_head.nms_threshold=1.2", r"model\.roi_head\.nms_threshold: 1\.2 is out of range; allowed: \[0, 1\]"),
    ("model.roi_head.score_threshold=-0.1", r"model\.roi_head\.score_threshold: -0\.1 is out of range"),
    ("model.proposal_source.iou_thresholds=[0.3,1.7]", r"model\.proposal_source\.iou_thresholds\[1\]: 1\.7 is out of range"),
    ("model.proposal_source.post_nms_top_n=[0,100]", r"model\.proposal_source\.post_nms_top_n\[0\]: 0 is out of range"),
    ("+train.patience=0", r"train\.patience: 0 is out of range"),
    ("train.optimizer.lr=nan", r"train\.optimizer\.lr: nan is out of range"),
    ("+train.freeze_backbone=-2", r"train\.freeze_backbone: -2 is out of range; allowed: \[-1, inf\)"),
])
def test_out_of_range_numbers_are_refused_by_key_before_anything_is_built(override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(ROOT / "configs/faster_rcnn/shapes.yaml", [override])


def test_a_transform_rejecting_its_argument_is_one_line_naming_the_argument():
    cfg = load_experiment(ROOT / "configs/faster_rcnn/shapes.yaml",
                          ["data.train.transforms=[{name: horizontal_flip, p: 2}]"])
    with pytest.raises(ConfigError) as info:
        build_split(cfg, "train")
    message = str(info.value)
    assert "\n" not in message
    assert "transforms[0]: cannot build transform 'horizontal_flip': p: Input should be less than or equal to 1 (got 2)" in message


def test_range_bounds_open_closed_and_unbounded():
    closed, half_open = Range(0, 1), Range(0, low_open=True)
    assert closed.contains(0) and closed.contains(1) and closed.contains(0.5)
    assert not closed.contains(-1e-9) and not closed.contains(1 + 1e-9) and not closed.contains(float("nan"))
    assert not half_open.contains(0) and half_open.contains(1e-12) and half_open.contains(float("inf"))
    assert (str(closed), str(half_open), str(Range(1))) == ("[0, 1]", "(0, inf)", "[1, inf)")


def test_every_registered_builder_has_resolvable_annotations():
    """Validation reads the builders' type hints; one that cannot be resolved would switch
    the checks off for that builder, so it is an error, not a silent skip."""
    import detseg.experiment  # noqa: F401 - registers every builder
    import detseg.registry

    registries = [r for r in vars(detseg.registry).values() if isinstance(r, Registry)]
    assert len(registries) >= 10
    for registry in registries:
        for name in registry.names():
            builder_signature(registry.get(name))  # raises on an unresolvable annotation


def test_a_builder_whose_annotations_do_not_resolve_is_named():
    registry = Registry("gadget")

    def make_gadget(size: "UndefinedType" = 1):  # noqa: F821 - unresolvable on purpose
        return size

    registry.register("gadget", make_gadget)
    with pytest.raises(TypeError, match=r"annotations of .*make_gadget do not resolve.*UndefinedType"):
        validate({"name": "gadget", "size": 2}, Component(registry), "thing")


def test_unknown_registry_name_lists_nearest_and_all():
    with pytest.raises(UnknownNameError) as info:
        load_experiment(ROOT / "configs/default.yaml", ["data.val.dataset.name=shapez"])
    message = str(info.value)
    assert "data.val.dataset.name: unknown dataset 'shapez'. Did you mean 'shapes'?" in message
    assert "Available: coco, seg_folder, shapes, voc" in message


def test_unset_mandatory_value_is_named(tmp_path):
    cfg = tmp_path / "configs" / "exp.yaml"
    cfg.parent.mkdir()
    cfg.write_text("data:\n  val:\n    dataset: {name: coco, ann_file: '???', image_dir: x}\n")
    with pytest.raises(ConfigError, match=r"data\.val\.dataset\.ann_file: required value is not set"):
        load_experiment(cfg)


@pytest.mark.parametrize("override,message", [
    ("model=fast_rcnn_tny", r"Could not find 'model/fast_rcnn_tny' \(did you mean 'fast_rcnn_tiny'\?\)\. "
                            r"Available options in 'model': .*faster_rcnn_tiny"),
    ("trainmax", r"Error parsing override 'trainmax': expected key=value"),
])
def test_hydra_errors_are_one_line(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment(ROOT / "configs/faster_rcnn/shapes.yaml", [override])
    assert "\n" not in str(info.value)


def test_yaml_syntax_error_names_the_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("data: {val: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line 2, column 1: ") as info:
        load_config(cfg)
    assert "\n" not in str(info.value)


def test_missing_file_and_wrong_suffix():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="config path is a folder, not a YAML file"):
        load_config(ROOT / "configs")
    with pytest.raises(ConfigError, match=r"\.yaml or \.yml"):
        load_config(ROOT / "pyproject.toml")


def test_registry_rejects_duplicates_and_build_checks_required_keys():
    registry = Registry("thing")

    @registry.register("point")
    def make_point(x: int, y: int = 0):
        return (x, y)

    with pytest.raises(KeyError, match="already registered"):
        registry.register("point", make_point)
    assert build({"name": "point", "x": 2}, registry, "p") == (2, 0)
    with pytest.raises(ConfigError, match="p: thing 'point' needs key\\(s\\) x"):
        build({"name": "point"}, registry, "p")
    with pytest.raises(ConfigError, match="p.x: expected int, got str"):
        build({"name": "point", "x": "2"}, registry, "p")
    with pytest.raises(ConfigError, match="no 'name'"):
        validate({"x": 1}, Component(registry), "p")


def test_dataset_node_cannot_set_code_supplied_parameters():
    with pytest.raises(ConfigError, match="'transforms' is not set in a dataset node"):
        build({"name": "shapes", "transforms": []}, DATASETS, "data.val.dataset")


MINI = ROOT / "datasets"
DATA_OVERRIDES = {
    "coco": [f"data.{split}.dataset.{key}={value}" for split in ("train", "val") for key, value in (
        ("ann_file", MINI / "shapes_coco_mini/annotations/instances_val.json"),
        ("image_dir", MINI / "shapes_coco_mini/val"))],
    "voc": [f"data.data_root={MINI / 'shapes_voc_mini'}", "data.train.dataset.split=val",
            "data.val.dataset.split=val"],
}
CAMVID_CLASSES = 11


@pytest.fixture(scope="module")
def camvid_root(tmp_path_factory):
    """A CamVid-style folder: train/ + trainannot/ etc., labels 0..10 and void 11."""
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("camvid")
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        (root / split).mkdir()
        (root / f"{split}annot").mkdir()
        for i in range(4):
            cv2.imwrite(str(root / split / f"f{i}.png"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
            cv2.imwrite(str(root / f"{split}annot" / f"f{i}.png"),
                        rng.integers(0, CAMVID_CLASSES + 1, (24, 32), dtype=np.uint8))
    return root


EXPERIMENTS = sorted(p for p in (ROOT / "configs").glob("*/*.yaml")
                     if p.parent.name not in CONFIG_GROUPS)  # groups are parts


def overrides_for_sample_data(path: Path, camvid_root: Path) -> list[str]:
    """Overrides that point an experiment at the small data sets of the repository (and a
    CamVid-style folder); the model's class count (model.num_classes) is the data set's."""
    data = next((kind for kind in DATA_OVERRIDES if path.stem.endswith(kind)), None)
    if path.parent.name == "finetune" and "rcnn" in path.stem:
        data = "coco"
    overrides = list(DATA_OVERRIDES.get(data, []))
    if path.stem.endswith("camvid"):
        overrides.append(f"data.data_root={camvid_root}")
    if path.parent.name == "finetune" and "deeplab" in path.stem:  # a camvid-style folder, ignore 255
        overrides += [f"data.data_root={camvid_root}", f"data.class_names=[{','.join(f'c{i}' for i in range(12))}]"]
    if path.parent.name == "custom":  # your own data: the repository's COCO sample, a CamVid-style folder
        overrides += (DATA_OVERRIDES["coco"] if not path.stem.startswith("segment") else
                      [f"data.data_root={camvid_root}", f"data.class_names=[{','.join(f'c{i}' for i in range(12))}]"])
    if path.parent.name in ("rcnn", "fast_rcnn"):  # proposal files are made by tools/gen_proposals.py
        overrides += ["data.train.proposals=null", "data.val.proposals=null"]
    return overrides


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_model_configs_build_their_data_evaluator_and_model(path, camvid_root):
    from detseg.experiment import build_model_for
    from detseg.models.base import Segmenter

    cfg = load_experiment(path, overrides_for_sample_data(path, camvid_root))
    dataset = build_split(cfg, "val")
    build_evaluator(cfg, dataset)
    model = build_model_for(cfg, dataset, initialize=False)  # the weights init_from names are not fetched
    expected = len(dataset.semantic_class_names) if isinstance(model, Segmenter) else dataset.num_classes
    assert model.num_classes == expected == cfg.model.num_classes  # the data set's, written into the config


def test_schedule_and_train_recipes_are_group_options():
    cfg = load_experiment(ROOT / "configs/faster_rcnn/shapes.yaml", ["schedule=cosine", "train=cpu_det_3000"])
    assert cfg.train.schedule.name == "cosine" and cfg.train.max_iters == 3000


def test_a_model_option_picks_its_backbone_from_the_backbone_group():
    cfg = load_experiment(ROOT / "configs/rcnn/shapes.yaml", ["model.backbone.depth=3"])
    assert dict(cfg.model.backbone) == {"name": "tiny_convnet", "widths": [16, 32, 64, 128, 256], "depth": 3,
                                        "out_features": ["c3", "c4", "c5"]}
    assert cfg.model.roi_head.pooler == "crop_warp"  # and its RoI head from the roi_head group
