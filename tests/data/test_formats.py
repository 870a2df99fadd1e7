"""One reader per format: the data doctor reports exactly the problems a data set refuses
(with the same text), the one box check follows its policy, and the writers' files read
back to what was written."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from detseg.data import CocoDataset, SegFolderDataset, VocDataset, YoloTxtDataset
from detseg.data.doctor import check_dataset
from detseg.data.formats import ImageEntry, LabeledSet, read_mask_folder, write_mask_folder
from detseg.data.validation import check_box
from detseg.errors import DataError
from detseg.structures.masks import mask_to_rle

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "datasets"


@pytest.mark.parametrize("box, size, expected_box, expected", [
    ([1, 2, 5, 6], (10, 8), [1, 2, 5, 6], None),
    ([-2, 2, 5, 9], (10, 8), [0, 2, 5, 8], ("warning", "box outside image", "reaches outside")),
    ([12, 2, 15, 6], (10, 8), None, ("error", "box outside image", "no area inside")),
    ([5, 2, 1, 6], (10, 8), None, ("error", "degenerate box", "negative width or height")),
    ([1, 2, 1, 6], (10, 8), None, ("error", "degenerate box", "zero width or height")),
    ([1, 2, np.nan, 6], (10, 8), None, ("error", "degenerate box", "non-finite")),
])
def test_check_box_follows_the_policy(box, size, expected_box, expected):
    clipped, issue = check_box(np.array(box, float), *size)
    if expected_box is None:
        assert clipped is None
    else:
        np.testing.assert_array_equal(clipped, expected_box)
        again, again_issue = check_box(clipped, *size)  # a clipped box is valid as it is
        np.testing.assert_array_equal(again, clipped)
        assert again_issue is None
    if expected is None:
        assert issue is None
    else:
        assert (issue.level, issue.kind) == expected[:2] and expected[2] in issue.detail


def write_image(path: Path, width: int = 64, height: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 127, np.uint8))


def coco_with(tmp_path: Path, change) -> dict:
    """A clean two-image COCO set (masks included) with ``change(data)`` applied."""
    def square(x):
        mask = np.zeros((48, 64), np.uint8)
        mask[10:20, x:x + 10] = 1
        return mask_to_rle(mask)

    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                       {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48}],
            "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, 10, 10, 10], "area": 100,
                             "iscrowd": 0, "segmentation": square(x)} for i, x in enumerate((5, 30))],
            "categories": [{"id": 1, "name": "thing"}]}
    for name in ("a.jpg", "b.jpg"):
        write_image(tmp_path / "images" / name)
    change(data)
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return {"name": "coco", "ann_file": str(tmp_path / "ann.json"), "image_dir": str(tmp_path / "images")}


COCO_PROBLEMS = {
    "degenerate box": lambda d: d["annotations"][0].update(bbox=[5, 10, -3, 10]),
    "box outside image": lambda d: d["annotations"][0].update(bbox=[70, 10, 10, 10]),
    "duplicate image id": lambda d: d["images"].append({"id": 1, "file_name": "b.jpg", "width": 64, "height": 48}),
    "duplicate annotation id": lambda d: d["annotations"][1].update(id=1),
    "unknown image id": lambda d: d["annotations"][1].update(image_id=9),
    "class not in category list": lambda d: d["annotations"][0].update(category_id=3),
    "malformed label": lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
    "missing mask": lambda d: d["annotations"][0].pop("segmentation"),
    "mask size mismatch": lambda d: d["annotations"][0].update(segmentation=mask_to_rle(np.ones((8, 8), bool))),
    "missing image": lambda d: d["images"].append({"id": 3, "file_name": "gone.jpg", "width": 64, "height": 48}),
}


@pytest.mark.parametrize("kind", sorted(COCO_PROBLEMS))
def test_doctor_reports_what_the_coco_data_set_refuses(tmp_path, kind):
    node = coco_with(tmp_path, COCO_PROBLEMS[kind])
    report = check_dataset(node, "train", "brief")
    assert [f.kind for f in report.errors()] == [kind]
    with pytest.raises(DataError) as refused:
        CocoDataset(node["ann_file"], node["image_dir"])
    assert report.errors()[0].text in str(refused.value)
    skip = report.images_with_errors()
    if skip:  # the images the doctor's skip list names, the data set leaves out; then it builds
        kept = CocoDataset(node["ann_file"], node["image_dir"], skip_files=skip)
        assert {e.name for e in kept.entries}.isdisjoint(skip)


def test_a_clean_set_gives_neither_findings_nor_refusal(tmp_path):
    node = coco_with(tmp_path, lambda d: None)
    assert check_dataset(node, "train", "full").findings == []
    assert len(CocoDataset(node["ann_file"], node["image_dir"])) == 2


def test_an_image_size_mismatch_has_the_same_text_in_the_doctor_and_when_loaded(tmp_path):
    node = coco_with(tmp_path, lambda d: None)
    write_image(tmp_path / "images" / "b.jpg", 32, 32)
    [finding] = check_dataset(node, "train", "brief").findings
    with pytest.raises(DataError) as refused:
        CocoDataset(node["ann_file"], node["image_dir"]).load(1)
    assert finding.kind == "image size mismatch" and str(refused.value) == finding.text


def test_doctor_reports_what_voc_and_yolo_data_sets_refuse(tmp_path):
    voc = tmp_path / "voc"
    shutil.copytree(MINI / "shapes_voc_mini", voc)
    xml = voc / "Annotations" / "val_000003.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>hexagon", 1))
    (voc / "Annotations" / "val_000005.xml").write_text("<annotation><size>")
    node = {"name": "voc", "root": str(voc), "split": "val"}
    report = check_dataset(node, "val", "brief")
    assert {(f.kind, f.image) for f in report.errors()} == {("class not in category list", "val_000003"),
                                                            ("unreadable annotation", "val_000005")}
    with pytest.raises(DataError) as refused:
        VocDataset(str(voc), split="val")
    assert all(f.text in str(refused.value) for f in report.errors())
    assert len(VocDataset(str(voc), split="val", skip_files=report.images_with_errors())) == 6

    yolo = tmp_path / "yolo"
    shutil.copytree(MINI / "shapes_yolo_mini", yolo)
    label = yolo / "labels" / "val" / "000002.txt"
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n0 0.5 0.5 0 0.1\n")
    report = check_dataset({"name": "yolo_txt", "data_yaml": str(yolo / "data.yaml"), "split": "val"}, "val", "brief")
    assert [f.kind for f in report.errors()] == ["class not in category list", "degenerate box"]
    with pytest.raises(DataError) as refused:
        YoloTxtDataset(str(yolo / "data.yaml"), split="val")
    assert all(f.text in str(refused.value) for f in report.errors())


def test_doctor_reports_what_label_map_data_sets_refuse(tmp_path):
    voc = tmp_path / "voc"
    shutil.copytree(MINI / "shapes_voc_mini", voc)
    (voc / "SegmentationClass" / "val_000004.png").unlink()
    report = check_dataset({"name": "voc", "root": str(voc), "split": "val", "task": "segmentation"}, "val", "full")
    [error] = report.errors()
    assert (error.kind, error.image) == ("missing mask", "val_000004")
    with pytest.raises(DataError) as refused:
        VocDataset(str(voc), split="val", task="segmentation")
    assert error.text in str(refused.value)

    images, masks = tmp_path / "img", tmp_path / "ann"
    write_image(images / "a.png")
    masks.mkdir()
    cv2.imwrite(str(masks / "a.png"), np.full((48, 64), 5, np.uint8))
    node = {"name": "seg_folder", "image_dir": str(images), "mask_dir": str(masks), "class_names": ["bg", "fg"]}
    [error] = check_dataset(node, "train", "full").errors()
    with pytest.raises(DataError) as refused:
        SegFolderDataset(str(images), str(masks), ["bg", "fg"])[0]
    assert error.kind == "class not in category list" and str(refused.value) == error.text


def test_mask_folder_writer_and_reader_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 3, (20, 30), dtype=np.uint8) for _ in range(3)]
    entries = [ImageEntry(Path(f"{i}.png"), f"{i}.png", i + 1, 30, 20, pixels=rng.integers(0, 255, (20, 30, 3), np.uint8),
                          sem_seg=labels[i]) for i in range(3)]
    write_mask_folder(LabeledSet(["a", "b", "c"], entries), tmp_path / "images", tmp_path / "masks")
    read = read_mask_folder(tmp_path / "images", tmp_path / "masks", ["a", "b", "c"])
    assert read.problems == [] and [e.name for e in read.images] == ["0.png", "1.png", "2.png"]
    dataset = SegFolderDataset(str(tmp_path / "images"), str(tmp_path / "masks"), ["a", "b", "c"])
    for i in range(3):
        np.testing.assert_array_equal(dataset.load(i).sem_seg, labels[i])
        np.testing.assert_array_equal(dataset.load(i).image, entries[i].pixels)  # PNG: lossless
