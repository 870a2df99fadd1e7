"""``model.num_classes``: one place for every model, one meaning (the length of the data set's
class list), the data set's count by default, written into the run's config."""

from pathlib import Path

import pytest
import torch
import yaml

from detseg.config import load_config, to_plain
from detseg.engine.checkpoint import load_checkpoint
from detseg.errors import ConfigError
from detseg.experiment import (
    build_model_for,
    build_split,
    evaluate_checkpoint,
    load_experiment,
    train_from_config,
)
from detseg.inference import Predictor
from detseg.models import build_model
from detseg.structures import Instances
from tests.engine.test_trainer import EXPERIMENT

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["data.val.dataset.num_images=2", "data.val.dataset.image_size=64"]


@pytest.mark.parametrize("config, expected", [
    ("configs/faster_rcnn/shapes.yaml", 3),  # object classes, no background
    ("configs/yolo/shapes.yaml", 3),
    ("configs/ssd/shapes.yaml", 3),
    ("configs/unet/shapes.yaml", 4),  # label values, background included
])
def test_a_model_without_num_classes_gets_the_data_sets_count(config, expected):
    cfg = load_experiment(ROOT / config, SMALL)
    assert cfg.model.get("num_classes") is None
    dataset = build_split(cfg, "val")
    model = build_model_for(cfg, dataset, initialize=False)
    assert model.num_classes == expected == cfg.model.num_classes  # written into the config


def test_the_model_is_the_one_an_explicit_num_classes_builds():
    cfg = load_experiment(ROOT / "configs/faster_rcnn/shapes.yaml", SMALL)
    torch.manual_seed(0)
    default = build_model_for(cfg, build_split(cfg, "val"), initialize=False)
    torch.manual_seed(0)
    explicit = build_model(to_plain(cfg.model), initialize=False)
    assert {k: v.shape for k, v in default.state_dict().items()} == {k: v.shape for k, v in explicit.state_dict().items()}
    assert all(torch.equal(v, explicit.state_dict()[k]) for k, v in default.state_dict().items())


def test_a_num_classes_other_than_the_data_sets_is_refused():
    cfg = load_experiment(ROOT / "configs/faster_rcnn/shapes.yaml", [*SMALL, "model.num_classes=5"])
    with pytest.raises(ConfigError, match=r"model\.num_classes is 5 but the data set has 3 classes"):
        build_model_for(cfg, build_split(cfg, "val"), initialize=False)


def test_without_a_data_set_num_classes_must_be_set():
    node = to_plain(load_config(ROOT / "configs/model/faster_rcnn_tiny.yaml"))
    with pytest.raises(ConfigError, match=r"model\.num_classes is not set"):
        build_model(node, initialize=False)
    cfg = load_experiment(ROOT / "configs/unet/shapes.yaml")
    with pytest.raises(ConfigError, match=r"model\.num_classes is not set"):
        build_model_for(cfg, None, initialize=False)
    assert build_model({**node, "num_classes": 7}, initialize=False).num_classes == 7


@pytest.mark.parametrize("config, key", [
    ("configs/faster_rcnn/shapes.yaml", "model.roi_head"),
    ("configs/yolo/shapes.yaml", "model.head"),
    ("configs/ssd/shapes.yaml", "model.head"),
])
def test_num_classes_in_a_head_node_is_refused_pointing_to_model_num_classes(config, key):
    with pytest.raises(ConfigError) as info:
        load_experiment(ROOT / config, [f"{key}.num_classes=3"])
    message = str(info.value)
    assert "\n" not in message
    assert f"{key}: 'num_classes'" in message and "set model.num_classes instead" in message


def test_a_run_without_num_classes_is_evaluated_and_predicted_from_its_saved_config(tmp_path):
    model = {k: v for k, v in EXPERIMENT["model"].items() if k != "num_classes"}
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({**EXPERIMENT, "model": model, "train": {**EXPERIMENT["train"], "max_iters": 1}}))
    run_dir, metrics = train_from_config(config, [f"output_dir={tmp_path / 'out'}"], progress=False)
    state = load_checkpoint(run_dir / "last.pt")
    assert state["config"]["model"]["num_classes"] == 3
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["num_classes"] == 3
    again = evaluate_checkpoint(config, run_dir / "last.pt", progress=False, precision="fp32")
    assert again["AP50"] == pytest.approx(metrics["AP50"], nan_ok=True)
    predictor = Predictor.from_checkpoint(run_dir / "last.pt")  # no data set: the saved config says 3
    assert predictor.model.num_classes == 3
    out = predictor(torch.randint(0, 255, (48, 56, 3), dtype=torch.uint8).numpy())
    assert isinstance(out, Instances) and out.image_size == (48, 56)


def test_a_checkpoint_config_with_the_count_in_its_head_node_still_builds():
    from detseg.models.build import with_num_classes_lifted

    old = {**EXPERIMENT["model"], "roi_head": {**EXPERIMENT["model"]["roi_head"], "num_classes": 3}}
    del old["num_classes"]
    assert build_model(with_num_classes_lifted(old), initialize=False).num_classes == 3
