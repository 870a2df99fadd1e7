"""COCO <-> VOC <-> YOLO txt conversion round-trips boxes exactly (up to float rounding),
and the YOLO txt data set reads what the converter writes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detseg.data import YoloTxtDataset
from detseg.data.formats import read_coco, read_voc, read_yolo
from detseg.data.formats.subset import hold_out, keep_classes

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "datasets" / "shapes_coco_mini"


def convert(*args: str) -> None:
    result = subprocess.run([sys.executable, "tools/convert.py", *args], check=False, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def boxes_by_image(labeled) -> dict[str, list]:
    return {Path(im.path).name: sorted((a.label, *np.round(a.box, 9)) for a in im.annotations)
            for im in labeled.images}


@pytest.fixture()
def fractional_coco(tmp_path):
    """The mini set with sub-pixel boxes, so rounding to whole pixels anywhere would show."""
    data = json.loads((MINI / "annotations" / "instances_val.json").read_text())
    for i, ann in enumerate(data["annotations"]):
        x, y, w, h = ann["bbox"]
        ann["bbox"] = [x + 0.25 + i / 100, y + 0.5, w - 0.75, h - 0.125]
    path = tmp_path / "fractional.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_yolo_voc_coco_round_trip_keeps_every_box(fractional_coco, tmp_path):
    original = read_coco(fractional_coco, MINI / "val")
    convert("--from", "coco", "--source", str(fractional_coco), "--images", str(MINI / "val"),
            "--to", "yolo", "--out", str(tmp_path / "yolo"), "--split", "val")
    convert("--from", "yolo", "--source", str(tmp_path / "yolo" / "data.yaml"), "--split", "val",
            "--to", "voc", "--out", str(tmp_path / "voc"))
    convert("--from", "voc", "--source", str(tmp_path / "voc"), "--split", "val",
            "--to", "coco", "--out", str(tmp_path / "coco"), "--split", "val")
    steps = {
        "yolo": read_yolo(tmp_path / "yolo" / "data.yaml", "val"),
        "voc": read_voc(tmp_path / "voc", "val", original.class_names),
        "coco": read_coco(tmp_path / "coco" / "annotations" / "instances_val.json", tmp_path / "coco" / "val"),
    }
    expected = boxes_by_image(original)
    assert sum(len(v) for v in expected.values()) == 19
    for name, labeled in steps.items():
        assert labeled.class_names == original.class_names and labeled.problems == [], name
        got = boxes_by_image(labeled)
        assert got.keys() == expected.keys(), name
        for image, objects in expected.items():
            np.testing.assert_allclose(np.array(got[image]), np.array(objects), atol=1e-6, err_msg=f"{name} {image}")
    # the test can fail: one shifted box in the YOLO labels is caught
    label = tmp_path / "yolo" / "labels" / "val" / "000001.txt"
    first, *rest = label.read_text().splitlines()
    cls, cx, *wh = first.split()
    label.write_text("\n".join([" ".join([cls, str(float(cx) + 0.001), *wh]), *rest]) + "\n")
    shifted = boxes_by_image(read_yolo(tmp_path / "yolo" / "data.yaml", "val"))
    assert not np.allclose(np.array(shifted["000001.jpg"]), np.array(expected["000001.jpg"]), atol=1e-6)


def test_yolo_txt_dataset_reads_converted_labels(tmp_path):
    convert("--from", "coco", "--source", str(MINI / "annotations" / "instances_val.json"), "--images",
            str(MINI / "val"), "--to", "yolo", "--out", str(tmp_path), "--split", "val")
    dataset = YoloTxtDataset(str(tmp_path / "data.yaml"), split="val")
    original = read_coco(MINI / "annotations" / "instances_val.json", MINI / "val")
    assert len(dataset) == 8 and dataset.class_names == ["circle", "square", "triangle"]
    record = dataset.load(0)
    expected = original.images[0]
    assert record.orig_size == (expected.height, expected.width)
    np.testing.assert_allclose(record.boxes, np.array([a.box for a in expected.annotations]), atol=1e-4)
    assert record.labels.tolist() == [a.label for a in expected.annotations]


def test_classes_and_held_out_split_from_one_coco_file(tmp_path):
    source = read_coco(MINI / "annotations" / "instances_val.json", MINI / "val")
    square = source.class_names.index("square")
    expected = {Path(im.path).name: sorted(tuple(np.round(a.box, 6)) for a in im.annotations if a.label == square)
                for im in source.images}
    convert("--from", "coco", "--source", str(MINI / "annotations" / "instances_val.json"), "--images", str(MINI / "val"),
            "--to", "coco", "--out", str(tmp_path / "out"), "--classes", "square", "--val-fraction", "0.25", "--seed", "3")
    parts = {split: read_coco(tmp_path / "out" / "annotations" / f"instances_{split}.json", tmp_path / "out" / split)
             for split in ("train", "val")}
    names = {split: [Path(im.path).name for im in part.images] for split, part in parts.items()}
    # every image once, in one split; a quarter held out (rounded), the source's order kept in each
    assert sorted(names["train"] + names["val"]) == sorted(expected)
    assert len(names["val"]) == round(0.25 * len(expected))
    order = [Path(im.path).name for im in source.images]
    assert all(names[s] == [n for n in order if n in names[s]] for s in names)
    for part in parts.values():
        assert part.class_names == ["square"] and part.category_ids == [source.category_ids[square]]
        for im in part.images:  # only the squares, boxes unchanged; images without one stay as negatives
            got = sorted(tuple(np.round(a.box, 6)) for a in im.annotations)
            assert all(a.label == 0 for a in im.annotations) and got == expected[Path(im.path).name]
    assert any(not im.annotations for part in parts.values() for im in part.images)
    # the same seed draws the same split; another seed another one
    again = hold_out(keep_classes(source, ["square"]), 0.25, seed=3)[1]
    other = hold_out(keep_classes(source, ["square"]), 0.25, seed=4)[1]
    assert [Path(im.path).name for im in again.images] == names["val"]
    assert [Path(im.path).name for im in other.images] != names["val"]


@pytest.mark.parametrize("extra, message", [
    (["--classes", "hexagon"], "'hexagon' not among the data set's 3 classes (circle, square, triangle)"),
    (["--val-fraction", "1.5"], "--val-fraction 1.5: give a fraction between 0 and 1"),
])
def test_bad_subset_options_name_the_value(tmp_path, extra, message):
    result = subprocess.run([sys.executable, "tools/convert.py", "--from", "coco", "--source",
                             str(MINI / "annotations" / "instances_val.json"), "--images", str(MINI / "val"),
                             "--to", "yolo", "--out", str(tmp_path / "o"), *extra],
                            check=False, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
