"""tools/eval.py --report: the PNGs and report.html exist, every image the HTML references
is a PNG on disk, and the plotted numbers follow the evaluation."""

import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import yaml

from detseg.evaluation.plots import detection_confusion, pr_curves, write_segmentation_report
from detseg.evaluation.synthetic import random_coco_ground_truth, random_detections
from detseg.experiment import train_from_config
from tests.engine.test_trainer import EXPERIMENT

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def referenced_images(html_path: Path) -> list[Path]:
    parser = ImageSources()
    parser.feed(html_path.read_text())
    return [html_path.parent / src for src in parser.sources]


def test_detection_report_of_a_trained_model(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    run_dir, _ = train_from_config(config, [f"output_dir={tmp_path / 'run'}"], progress=False)
    report = tmp_path / "report"
    result = subprocess.run([sys.executable, "tools/eval.py", str(config), "--checkpoint", str(run_dir / "best.pt"),
                             "--report", str(report)], check=False, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    images = referenced_images(report / "report.html")
    assert {p.name for p in images} == {"pr_iou50.png", "pr_iou75.png", "confusion_matrix.png", "ap_per_class.png"}
    for path in images:
        assert path.read_bytes()[:8] == PNG_MAGIC, path
    page = (report / "report.html").read_text()
    assert "AP50" in page and "circle" in page and (report / "metrics.json").is_file()
    assert f"wrote {report / 'gallery.html'}" in result.stdout  # the error gallery, linked from the report
    assert 'href="gallery.html"' in page and (report / "gallery.html").is_file()


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes ``a[N, 4]`` and ``b[M, 4]`` (numpy, independent of detseg)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(-1), (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def crowd_only_predictions(gt, results, iou_threshold=0.5):
    """``(hits only a crowd region, hits both)`` counts: predictions whose IoU with some crowd
    box reaches the threshold and with every non-crowd box of their image stays below it;
    and those that reach it with both kinds (whose fate depends on the greedy matching)."""
    def xyxy(items):
        xywh = np.array([item["bbox"] for item in items], float).reshape(-1, 4)
        return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)

    only_crowd = both = 0
    for image in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        preds = xyxy([r for r in results if r["image_id"] == image["id"]])
        best = {}
        for crowd in (False, True):
            boxes = xyxy([a for a in anns if bool(a.get("iscrowd", 0)) == crowd])
            best[crowd] = iou_matrix(preds, boxes).max(1) if len(boxes) else np.zeros(len(preds))
        hits_crowd, hits_object = best[True] >= iou_threshold, best[False] >= iou_threshold
        only_crowd += int((hits_crowd & ~hits_object).sum())
        both += int((hits_crowd & hits_object).sum())
    return only_crowd, both


def test_plotted_numbers_follow_the_evaluation():
    """The confusion matrix counts each object once per row and each prediction once per
    column, except those that only hit a crowd region (counted independently here); perfect
    results give precision 1 and a diagonal matrix."""
    gt = random_coco_ground_truth(12, 3, seed=0)
    results = random_detections(gt, per_image=6, seed=1)
    matrix = detection_confusion(gt, results, score_threshold=0.0)
    per_class = Counter(a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0))
    ids = sorted(c["id"] for c in gt["categories"])
    # every ground-truth object is counted once in its row: matched to some class, or missed
    assert matrix[:3].sum(1).tolist() == [per_class[i] for i in ids]
    # every prediction is counted once in its column, unless it only hit a crowd region
    # (IoU >= 0.5 with a crowd box, < 0.5 with every object), which is not counted at all
    only_crowd, both = crowd_only_predictions(gt, results)
    assert only_crowd > 0 and both == 0  # the crowd rule is exercised (4 here), and the count is exact
    assert matrix[:, :3].sum() == len(results) - only_crowd
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"] if not a.get("iscrowd", 0)]
    curves = pr_curves(gt, perfect)
    for iou in (0.5, 0.75):  # every class has objects, so every curve is defined, and all ones
        assert (curves[iou] > -1).all(axis=0).tolist() == [True] * len(ids)
        assert np.all(curves[iou] == 1.0), iou
    assert np.diag(detection_confusion(gt, perfect))[:3].tolist() == [per_class[i] for i in ids]


def test_segmentation_report(tmp_path):
    matrix = np.array([[50, 5], [10, 35]])
    metrics = {"mIoU": 0.7, "IoU/bg": 50 / 65, "IoU/fg": 35 / 50}
    html_path = write_segmentation_report(tmp_path, metrics, matrix, ["bg", "fg"], "seg")
    images = referenced_images(html_path)
    assert {p.name for p in images} == {"confusion_matrix.png", "iou_per_class.png"}
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in images)
