"""train -> eval -> infer through the library functions, and once through the command line."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from detseg.errors import DataError
from detseg.experiment import evaluate_checkpoint, train_from_config
from detseg.inference import Predictor
from detseg.inference.run import predict_files
from detseg.structures import Instances
from tests.engine.test_trainer import EXPERIMENT

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    config = folder / "exp.yaml"
    config.write_text(yaml.safe_dump({**EXPERIMENT, "train": {**EXPERIMENT["train"], "max_iters": 2}}))
    run_dir, metrics = train_from_config(config, [f"output_dir={folder / 'out'}"], progress=False)
    return config, run_dir, metrics


def test_eval_of_a_checkpoint_reproduces_the_training_run_numbers(trained):
    config, run_dir, metrics = trained
    again = evaluate_checkpoint(config, run_dir / "last.pt", progress=False, precision="fp32")
    for key in ("AP", "AP50", "AR100"):
        assert again[key] == pytest.approx(metrics[key], nan_ok=True)


def test_predictor_takes_paths_arrays_and_pil_images(trained, tmp_path):
    _, run_dir, _ = trained
    predictor = Predictor.from_checkpoint(run_dir / "last.pt")
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image[:, :, ::-1])
    out = predictor.predict_batch([tmp_path / "a.png", image, Image.fromarray(image)], batch_size=2)
    assert all(isinstance(p, Instances) and p.image_size == (70, 90) for p in out)
    assert torch.equal(out[0].boxes.tensor, out[1].boxes.tensor)
    assert predictor.class_names == ["circle", "square", "triangle"]
    with pytest.raises(DataError, match=r"image file not found: .*missing\.jpg"):
        predictor(tmp_path / "missing.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"cannot decode image.*bad\.jpg"):
        predictor(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match="uint8"):
        predictor(np.zeros((4, 4), np.float32))


def test_infer_writes_pictures_and_coco_results(trained, tmp_path):
    _, run_dir, _ = trained
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.jpg"), np.full((40, 50, 3), 60 * i, np.uint8))
    out = predict_files(Predictor.from_checkpoint(run_dir / "last.pt"), [str(images)], tmp_path / "out",
                        score_threshold=0.0)
    assert sorted(p.name for p in out.glob("*.jpg")) == ["0.jpg", "1.jpg", "2.jpg"]
    results = json.loads((out / "predictions.json").read_text())
    assert all(set(r) >= {"image_id", "bbox", "score", "category_id"} for r in results)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        predict_files(Predictor.from_checkpoint(run_dir / "last.pt"), [str(empty)], tmp_path / "o2")


def test_command_line_train_eval_infer(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({**EXPERIMENT, "train": {**EXPERIMENT["train"], "max_iters": 1}}))
    run = tmp_path / "run"

    def tool(*args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)

    proc = tool("tools/train.py", str(config), f"output_dir={run}", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"run directory: {run}" in proc.stdout and "AP50" in proc.stdout
    proc = tool("tools/eval.py", str(config), "--checkpoint", str(run / "last.pt"), "--out", str(tmp_path / "m.json"))
    assert proc.returncode == 0, proc.stderr
    assert "AP" in json.loads((tmp_path / "m.json").read_text())
    proc = tool("tools/infer.py", "--checkpoint", str(run / "last.pt"), str(ROOT / "datasets/shapes_coco_mini/val"),
                "--out", str(tmp_path / "pred"))
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "pred").glob("*.jpg"))) == 8
    proc = tool("tools/train.py", str(config), f"output_dir={run}", "resume=true", "train.max_iters=1")
    assert proc.returncode == 0  # already finished: nothing left to do
    proc = tool("tools/eval.py", str(config), "--checkpoint", str(tmp_path / "nope.pt"))
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr


def test_eval_checkpoint_on_coco_and_voc_format_data_given_by_overrides(trained, tmp_path):
    _, run_dir, _ = trained
    config = tmp_path / "plain.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in EXPERIMENT.items() if k != "data"}))
    mini = ROOT / "datasets"
    coco = evaluate_checkpoint(config, run_dir / "last.pt", [
        "data=coco", f"data.val.dataset.ann_file={mini / 'shapes_coco_mini/annotations/instances_val.json'}",
        f"data.val.dataset.image_dir={mini / 'shapes_coco_mini/val'}"], progress=False)
    voc = evaluate_checkpoint(config, run_dir / "last.pt", [
        "data=voc", f"data.data_root={mini / 'shapes_voc_mini'}", "data.val.dataset.split=val", "evaluator=voc"],
        progress=False)
    assert set(coco) >= {"AP", "AP50", "AP/circle"} and set(voc) >= {"mAP", "AP/triangle"}
