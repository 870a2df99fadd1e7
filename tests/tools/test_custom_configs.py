"""Your own data in one command: ``tools/train.py configs/custom/detect_cpu.yaml`` on a COCO
folder (the repository's ``datasets/shapes_coco_mini``) for a few iterations, end to end;
the segmentation config on an image + mask folder; a bad budget is one ``error:`` line."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detseg.errors import ConfigError
from detseg.experiment import evaluate_checkpoint, train_from_config

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "datasets" / "shapes_coco_mini"
COCO_FOLDER = [f"data.{split}.dataset.{key}={value}" for split in ("train", "val") for key, value in (
    ("ann_file", MINI / "annotations" / "instances_val.json"), ("image_dir", MINI / "val"))]


def train_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/train.py", *args], capture_output=True, text=True, cwd=ROOT,
                          check=False)


def test_one_command_trains_on_a_coco_folder_with_size_and_anchors_from_the_data(tmp_path):
    run = tmp_path / "run"
    proc = train_command("configs/custom/detect_cpu.yaml", *COCO_FOLDER, "train.max_iters=3",
                         f"output_dir={run}", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "fit: image size 128: the median longest side of 8 data.train images is 128 pixels" in out
    coverage_line = next(line for line in out.splitlines() if line.startswith("fit: anchor coverage"))
    assert "IoU >= 0.7 (the RPN matcher's positive IoU)" in coverage_line
    assert "final evaluation" in out and "AP50" in out
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["fit"]["image_size"] == 128
    assert resolved["data"]["train"]["transforms"][0] == {"name": "longest_max_size", "max_size": 128}
    assert resolved["model"]["num_classes"] == 3  # circle, square, triangle: the data set's
    # tiny_convnet's anchors cover 0.89 of these boxes at IoU 0.7: re-fitted, printed, trained and saved
    refit = next(line for line in out.splitlines() if line.startswith("fit: anchors re-fitted"))
    assert str(resolved["model"]["proposal_source"]["anchor_sizes"]) in refit
    # The custom YAML evaluated with the checkpoint takes the run's fitted size and anchors
    trained = json.loads((run / "metrics.json").read_text())
    metrics = evaluate_checkpoint(ROOT / "configs/custom/detect_cpu.yaml", run / "last.pt",
                                  [*COCO_FOLDER, "device=cpu"], progress=False, precision="fp32")
    assert metrics["AP"] == pytest.approx(trained["AP"], abs=1e-12)


def test_a_time_budget_that_is_not_positive_is_one_error_line():
    proc = train_command("configs/custom/detect_cpu.yaml", *COCO_FOLDER, "train.max_time=0", "--dry-run")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "train.max_time: 0 is out of range" in lines[0]


@pytest.fixture()
def mask_folder(tmp_path):
    """A CamVid-layout folder: three images of different sizes per split, labels 0 / 1."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        (tmp_path / f"{split}annot").mkdir()
        for i, (h, w) in enumerate([(90, 150), (100, 170), (80, 120)]):
            cv2.imwrite(str(tmp_path / split / f"f{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            cv2.imwrite(str(tmp_path / f"{split}annot" / f"f{i}.png"), rng.integers(0, 2, (h, w), dtype=np.uint8))
    return tmp_path


def test_segment_config_trains_on_an_image_and_mask_folder(mask_folder, tmp_path, capsys):
    run_dir, metrics = train_from_config(
        ROOT / "configs/custom/segment_cpu.yaml",
        [f"data.data_root={mask_folder}", "data.class_names=[background,thing]", "device=cpu", "train.max_iters=2",
         f"output_dir={tmp_path / 'run'}"], progress=False)
    out = capsys.readouterr().out
    assert "fit: image size 160: the median longest side of 3 data.train images is 150 pixels" in out
    assert {"mIoU", "IoU/background", "IoU/thing"} <= set(metrics)  # evaluated at the images' own sizes
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["data"]["train"]["transforms"][1] == {"name": "random_crop", "height": 160, "width": 160}


def test_resized_segmentation_validation_is_refused_before_training(mask_folder, tmp_path):
    with pytest.raises(ConfigError, match="segmentation evaluation needs validation transforms that keep the image"):
        train_from_config(ROOT / "configs/custom/segment_cpu.yaml", [
            f"data.data_root={mask_folder}", "data.class_names=[background,thing]", "device=cpu",
            "+data.val.transforms=[{name:longest_max_size,max_size:64}]", f"output_dir={tmp_path / 'run'}"],
            progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()
