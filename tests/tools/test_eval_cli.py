"""tools/eval.py end to end on the shapes set written in COCO and VOC layouts."""

import json
import subprocess
import sys

import numpy as np
import pytest

from detseg.data.io import write_label_map
from detseg.evaluation.synthetic import results_from_ground_truth

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "tools"))
import eval as eval_tool


def run(argv, capsys):
    code = eval_tool.main(argv)
    return code, capsys.readouterr().out


def test_ground_truth_as_results_gives_ap_one_in_both_layouts(shapes_on_disk, tmp_path, capsys):
    gt = json.loads(shapes_on_disk["coco_json"].read_text())
    results = tmp_path / "perfect.json"
    results.write_text(json.dumps(results_from_ground_truth(gt)))
    out_json = tmp_path / "m.json"
    code, out = run(["--gt", str(shapes_on_disk["coco_json"]), "--results", str(results), "--out", str(out_json)], capsys)
    assert code == 0 and "AP50" in out and "triangle" in out
    metrics = json.loads(out_json.read_text())
    for key in ("AP", "AP50", "AP75", "APs", "APm"):
        assert metrics[key] == pytest.approx(1.0)
    assert all(v["AP"] == pytest.approx(1.0) for v in metrics["per_class"].values())
    for metric in ("voc07", "voc12"):
        for gt_arg in (str(shapes_on_disk["coco_json"]), str(shapes_on_disk["voc_root"])):
            run(["--gt", gt_arg, "--results", str(results), "--metric", metric, "--out", str(out_json)], capsys)
            assert json.loads(out_json.read_text())["mAP"] == pytest.approx(1.0)


def test_jittered_results_equal_pycocotools_and_agree_across_layouts(shapes_on_disk, tmp_path, capsys):
    from tests.evaluation.test_coco import pycocotools_reference

    gt = json.loads(shapes_on_disk["coco_json"].read_text())
    noisy = results_from_ground_truth(gt, jitter=0.08, drop=0.1, false_positives=0.5, seed=1)
    results = tmp_path / "noisy.json"
    results.write_text(json.dumps(noisy))
    numbers = {}
    for layout, gt_arg in (("coco", shapes_on_disk["coco_json"]), ("voc", shapes_on_disk["voc_root"])):
        for metric in ("coco", "voc07", "voc12"):
            out_json = tmp_path / f"{layout}_{metric}.json"
            run(["--gt", str(gt_arg), "--results", str(results), "--metric", metric, "--out", str(out_json)], capsys)
            numbers[layout, metric] = json.loads(out_json.read_text())
    reference = pycocotools_reference(gt, noisy, "bbox").stats
    for i, key in enumerate(["AP", "AP50", "AP75", "APs", "APm"]):
        assert numbers["coco", "coco"][key] == pytest.approx(reference[i], abs=1e-9)
    # VOC layout: same boxes, so the same COCO numbers (area ranges use box area there)
    assert numbers["voc", "coco"]["AP50"] == pytest.approx(numbers["coco", "coco"]["AP50"], abs=1e-9)
    for metric in ("voc07", "voc12"):
        assert numbers["voc", metric]["mAP"] == pytest.approx(numbers["coco", metric]["mAP"], abs=1e-12)
        assert 0.3 < numbers["coco", metric]["mAP"] < 0.99
    assert numbers["coco", "voc07"]["mAP"] != numbers["coco", "voc12"]["mAP"]


def test_voc_devkit_result_files(shapes_on_disk, tmp_path, capsys):
    folder = tmp_path / "devkit"
    folder.mkdir()
    root = shapes_on_disk["voc_root"]
    names = (root / "class_names.txt").read_text().split()
    from detseg.data.voc import VocDataset

    dataset = VocDataset(str(root), split="val")
    lines = {n: [] for n in names}
    for i, objects in enumerate(dataset.objects):
        for box, label in zip(objects.boxes, objects.labels):
            x1, y1, x2, y2 = box
            lines[names[label]].append(f"{dataset.ids[i]} 0.9 {x1 + 1:g} {y1 + 1:g} {x2:g} {y2:g}")
    for n in names:
        (folder / f"comp4_det_val_{n}.txt").write_text("\n".join(lines[n]) + "\n")
    out_json = tmp_path / "m.json"
    run(["--gt", str(root), "--results", str(folder), "--metric", "voc07", "--out", str(out_json)], capsys)
    assert json.loads(out_json.read_text())["mAP"] == pytest.approx(1.0)


def test_mask_folders(shapes_on_disk, tmp_path, capsys):
    gt_dir = shapes_on_disk["voc_root"] / "SegmentationClass"
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for path in sorted(gt_dir.glob("*.png")):
        from detseg.data.io import read_label_map

        labels = read_label_map(path)
        labels[:, :8] = 0  # wipe a stripe: background gains, classes lose a little
        write_label_map(pred_dir / path.name, labels)
    out_json = tmp_path / "seg.json"
    code, out = run(["--gt-masks", str(gt_dir), "--pred-masks", str(pred_dir), "--num-classes", "4",
                     "--class-names", "background", "circle", "square", "triangle", "--out", str(out_json)], capsys)
    metrics = json.loads(out_json.read_text())
    assert code == 0 and 0.9 < metrics["mIoU"] < 1.0 and 0.95 < metrics["pixel_acc"] < 1.0
    assert set(metrics["per_class"]) == {"background", "circle", "square", "triangle"}
    assert metrics["per_class"]["background"]["IoU"] < 1.0


def cli(*args):
    return subprocess.run([sys.executable, "tools/eval.py", *args], capture_output=True, text=True,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))


def test_bad_inputs_give_one_line_errors_naming_the_culprit(shapes_on_disk, tmp_path):
    gt = shapes_on_disk["coco_json"]
    results = tmp_path / "r.json"
    results.write_text(json.dumps([{"image_id": 9999, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 1}]))
    proc = cli("--gt", str(gt), "--results", str(results))
    assert proc.returncode == 2 and "r.json: entry 0 has image_id 9999, which is not in the ground truth" in proc.stderr
    results.write_text(json.dumps([{"image_id": 1, "category_id": 42, "bbox": [0, 0, 4, 4], "score": 1}]))
    proc = cli("--gt", str(gt), "--results", str(results))
    assert proc.returncode == 2 and "unknown category_id 42" in proc.stderr
    assert "Traceback" not in proc.stderr
    gt_masks, pred_masks = tmp_path / "g", tmp_path / "p"
    gt_masks.mkdir()
    pred_masks.mkdir()
    write_label_map(gt_masks / "x.png", np.zeros((8, 8), np.uint8))
    write_label_map(pred_masks / "x.png", np.zeros((8, 9), np.uint8))
    proc = cli("--gt-masks", str(gt_masks), "--pred-masks", str(pred_masks), "--num-classes", "2")
    assert proc.returncode == 2 and "x.png is 9x8 but its ground truth" in proc.stderr
