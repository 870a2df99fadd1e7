"""The data doctor finds every planted problem, reads clean sets with zero findings, writes
skip lists that training accepts, and training refuses data with errors."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from pycocotools import mask as mask_utils

from detseg.data.doctor import check_dataset
from detseg.errors import DataError
from detseg.experiment import train_from_config

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "datasets" / "shapes_coco_mini"


def write_image(path: Path, width: int = 64, height: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 127, np.uint8))


def square_rle(x: int, y: int, size: int, height: int = 48, width: int = 64) -> dict:
    mask = np.zeros((height, width), np.uint8, order="F")
    mask[y:y + size, x:x + size] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def planted_coco(root: Path) -> dict[str, str]:
    """One COCO set with one image per defect; returns {defect kind: image name}."""
    images, annotations = [], []
    planted = {}

    def add_image(name, width=64, height=48, write=True, file_size=None, image_id=None):
        image_id = image_id if image_id is not None else len(images) + 1
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        if write:
            write_image(root / "images" / name, *(file_size or (width, height)))
        return image_id

    def add_box(image_id, bbox, category_id=1, segmentation=None):
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                            "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0,
                            "segmentation": segmentation or square_rle(*map(int, bbox[:2]), 10)})

    add_box(add_image("good.jpg"), [10, 10, 10, 10])
    add_image("empty.jpg")
    planted["unreadable image"] = "corrupt.jpg"
    add_box(add_image("corrupt.jpg", write=False), [10, 10, 10, 10])
    (root / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    planted["missing image"] = "missing.jpg"
    add_box(add_image("missing.jpg", write=False), [10, 10, 10, 10])
    planted["image size mismatch"] = "wrong_size.jpg"
    add_box(add_image("wrong_size.jpg", file_size=(32, 32)), [1, 1, 10, 10])
    planted["box outside image"] = "outside.jpg"
    add_box(add_image("outside.jpg"), [70, 10, 10, 10])
    planted["degenerate box"] = "degenerate.jpg"
    add_box(add_image("degenerate.jpg"), [10, 10, 0, 10])
    planted["duplicate image id"] = "duplicate.jpg"
    add_image("duplicate.jpg", image_id=1)
    planted["class not in category list"] = "unknown_class.jpg"
    add_box(add_image("unknown_class.jpg"), [10, 10, 10, 10], category_id=7)
    planted["mask size mismatch"] = "mask_size.jpg"
    add_box(add_image("mask_size.jpg"), [10, 10, 10, 10], segmentation=square_rle(10, 10, 10, 20, 20))
    planted["mask disagrees with box"] = "mask_elsewhere.jpg"
    add_box(add_image("mask_elsewhere.jpg"), [10, 10, 10, 10], segmentation=square_rle(40, 30, 10))
    planted["warning: box outside image"] = "partly_outside.jpg"
    add_box(add_image("partly_outside.jpg"), [58, 10, 10, 10])
    (root / "annotations.json").write_text(json.dumps({
        "images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
    return planted


def test_every_planted_coco_problem_is_found(tmp_path):
    planted = planted_coco(tmp_path)
    report = check_dataset({"name": "coco", "ann_file": str(tmp_path / "annotations.json"),
                            "image_dir": str(tmp_path / "images")}, "train")
    found = {(f.level, f.kind, f.image) for f in report.findings}
    for kind, image in planted.items():
        level, kind = kind.split(": ") if kind.startswith("warning") else ("error", kind)
        if kind == "mask disagrees with box":
            level = "warning"
        assert (level, kind, image) in found, (kind, sorted(found))
    assert len(report.findings) == len(planted)  # and nothing else: the good image is clean
    assert report.empty_images == 4  # empty.jpg, and the three whose only box was rejected
    assert set(report.images_with_errors()) == {image for kind, image in planted.items()
                                                 if not kind.startswith("warning") and kind != "mask disagrees with box"}


def test_clean_sets_have_zero_findings(tmp_path):
    coco = check_dataset({"name": "coco", "ann_file": str(MINI / "annotations" / "instances_val.json"),
                          "image_dir": str(MINI / "val")}, "val")
    voc = check_dataset({"name": "voc", "root": str(ROOT / "datasets" / "shapes_voc_mini"), "split": "val"}, "val")
    for report in (coco, voc):
        assert report.images == 8 and report.findings == []
        assert sum(report.objects_per_class.values()) == 19


def test_yolo_voc_and_label_map_problems_are_found(tmp_path):
    (tmp_path / "yolo" / "data.yaml").parent.mkdir()
    (tmp_path / "yolo" / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train",
                                                                 "names": ["a", "b"]}))
    labels = {"ok": "0 0.5 0.5 0.2 0.2\n", "badline": "0 0.5 oops\n", "badclass": "5 0.5 0.5 0.2 0.2\n",
              "flat": "1 0.5 0.5 0.0 0.2\n"}
    for stem, text in labels.items():
        write_image(tmp_path / "yolo" / "images" / "train" / f"{stem}.jpg")
        (tmp_path / "yolo" / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (tmp_path / "yolo" / "labels" / "train" / f"{stem}.txt").write_text(text)
    (tmp_path / "yolo" / "images" / "train" / "broken.png").write_bytes(b"nope")
    yolo = check_dataset({"name": "yolo_txt", "data_yaml": str(tmp_path / "yolo" / "data.yaml")}, "train")
    assert {(f.kind, f.image) for f in yolo.findings} == {
        ("malformed label", "badline.jpg"), ("class not in category list", "badclass.jpg"),
        ("degenerate box", "flat.jpg"), ("unreadable image", "broken.png")}

    images, masks = tmp_path / "seg" / "img", tmp_path / "seg" / "ann"
    masks.mkdir(parents=True)
    for stem, mask in {"ok": np.zeros((48, 64)), "small": np.zeros((10, 10)), "value": np.full((48, 64), 9)}.items():
        write_image(images / f"{stem}.png")
        cv2.imwrite(str(masks / f"{stem}.png"), mask.astype(np.uint8))
    write_image(images / "nomask.png")
    seg = check_dataset({"name": "seg_folder", "image_dir": str(images), "mask_dir": str(masks),
                         "class_names": ["bg", "fg"], "ignore_index": 255}, "train")
    assert {(f.kind, f.image) for f in seg.findings} == {
        ("mask size mismatch", "small.png"), ("class not in category list", "value.png"),
        ("missing mask", "nomask.png")}


def experiment(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "defaults": [{"/model": "faster_rcnn_tiny"}, "_self_"],
        "data": {"train": {"dataset": {"name": "coco", "ann_file": str(tmp_path / "annotations.json"),
                                       "image_dir": str(tmp_path / "images"), "with_masks": False},
                           "batch_size": 2}},
        "train": {"max_iters": 1},
        "device": "cpu",
    }))
    return path


def test_training_refuses_errors_and_accepts_the_doctors_skip_list(tmp_path):
    planted_coco(tmp_path)
    config = experiment(tmp_path)
    with pytest.raises(DataError, match="skip_files"):
        train_from_config(config, dry_run=True)
    result = subprocess.run([sys.executable, "tools/check_data.py", str(config), "--split", "train",
                             "--skip-lists", str(tmp_path / "skip")], check=False, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "mask disagrees with box" not in result.stdout  # with_masks false
    skipped = (tmp_path / "skip" / "train.txt").read_text().split()
    assert "good.jpg" not in skipped and "outside.jpg" in skipped
    train_from_config(config, [f"data.train.dataset.skip_files={tmp_path / 'skip' / 'train.txt'}"], dry_run=True)
