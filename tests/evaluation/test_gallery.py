"""The galleries: tools/eval.py --report's worst images, and tools/browse.py's data set pages
(their content; tests/evaluation/test_gallery_browser.py opens them in Chromium)."""

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from detseg.data.io import write_label_map
from detseg.data.shapes import ShapesDataset
from detseg.evaluation.errors import (
    FALSE_POSITIVE,
    MISSED,
    POOR_LOCALISATION,
    WRONG_CLASS,
)
from detseg.evaluation.segmentation import SegmentationEvaluator
from detseg.evaluation.worst import WorstImages
from detseg.structures import SemanticMap
from tests.evaluation.gallery_fixtures import (
    DETECTION_MODES,
    MINI,
    browse_gallery,
    detection_report,
    segmentation_report,
)

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Cards(HTMLParser):
    """The cards of a gallery page: title, image, classes, tags, caption lines."""

    def __init__(self):
        super().__init__()
        self.cards, self.images, self._field = [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and attrs.get("class") == "card":
            self.cards.append({"classes": json.loads(attrs["data-classes"]), "lines": [],
                               "tags": {tuple(t) for t in json.loads(attrs["data-tags"])}})
        elif tag == "img":
            self.images.append(attrs["src"])
            if self.cards:
                self.cards[-1]["image"] = attrs["src"]
        self._field = tag if self.cards and tag in ("h3", "p") else None

    def handle_data(self, data):
        if self._field == "h3":
            self.cards[-1]["title"] = data
        elif self._field == "p":
            self.cards[-1]["lines"].append(data)


def read_page(path: Path) -> Cards:
    parser = Cards()
    parser.feed(path.read_text())
    for src in parser.images:
        assert (path.parent / src).read_bytes()[:8] == PNG_MAGIC, src
    return parser


def test_detection_gallery_shows_the_images_with_errors_each_with_its_kind(tmp_path):
    detection_report(tmp_path)
    cards = read_page(tmp_path / "gallery.html").cards
    images = json.loads((MINI / "annotations" / "instances_val.json").read_text())["images"]
    names = [im["file_name"] for im in sorted(images, key=lambda im: im["id"])]
    expected = {name: DETECTION_MODES[k % len(DETECTION_MODES)] for k, name in enumerate(names)}
    assert sorted(card["title"] for card in cards) == sorted(n for n, mode in expected.items() if mode)
    for card in cards:
        kinds = {kind for kind, _ in card["tags"]}
        assert kinds == {expected[card["title"]]}, card
        assert card["lines"][0] == {MISSED: "1 error: 1 missed", WRONG_CLASS: "1 error: 1 wrong class",
                                    POOR_LOCALISATION: "1 error: 1 poor localisation",
                                    FALSE_POSITIVE: "1 error: 1 false positive"}[expected[card["title"]]]


def test_segmentation_gallery_is_lowest_miou_first_with_error_kinds(tmp_path):
    segmentation_report(tmp_path)
    cards = read_page(tmp_path / "gallery.html").cards
    mious = [float(card["lines"][0].split()[1]) for card in cards]
    assert len(cards) == 6 and mious == sorted(mious) and mious[-1] < 1
    kinds = [{kind for kind, _ in card["tags"]} for card in cards]
    by_title = {card["title"]: k for card, k in zip(cards, kinds)}
    # image k + 1 (image ids of shapes start at 1) got error k % 3: missed, wrong class, false positive
    assert by_title["image 1"] == {MISSED} and by_title["image 2"] == {WRONG_CLASS}
    assert by_title["image 3"] == {FALSE_POSITIVE}


def test_worst_images_keeps_the_lowest_scores_in_offer_order_and_skips_nan():
    worst = WorstImages(2)
    made = []
    for score in (0.5, float("nan"), 0.2, 0.9, 0.2, 0.1):
        worst.offer(score, lambda s=score: made.append(s) or s)
    assert worst.gathered() == [(0.1, 5, 0.1), (0.2, 2, 0.2)]  # the later 0.2 ties and loses
    assert 0.9 not in made and worst.seen == 6


def test_segmentation_evaluator_keeps_its_worst_maps(monkeypatch):
    monkeypatch.setattr(SegmentationEvaluator, "gallery_size", 1)
    evaluator = SegmentationEvaluator(2)
    target = np.array([[0, 1], [1, 255]])
    predictions = [SemanticMap(torch.tensor([[0, 1], [1, 0]])), SemanticMap(torch.tensor([[1, 0], [0, 0]]))]
    evaluator.update(predictions, [target, target])
    [(miou, index, (pred, kept_target))] = evaluator.worst.gathered()
    assert index == 1 and miou == 0.0 and pred.tolist() == [[1, 0], [0, 0]] and kept_target.tolist() == target.tolist()
    evaluator.reset()
    assert evaluator.worst.gathered() == []


def test_browse_draws_every_image_of_the_mini_set(tmp_path):
    result = browse_gallery(tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"wrote {tmp_path / 'gallery.html'}" in result.stdout
    cards = read_page(tmp_path / "gallery.html").cards
    assert [c["title"] for c in cards] == [f"{i:06d}.jpg" for i in range(1, 9)]
    assert cards[0]["lines"][0] == "5 object(s): 1 circle, 3 triangle, 1 square"


def test_browse_shows_the_doctors_findings_first_and_leaves_out_refused_images(tmp_path):
    data = json.loads((MINI / "annotations" / "instances_val.json").read_text())
    by_name = {im["file_name"]: im for im in data["images"]}
    anns = {name: [a for a in data["annotations"] if a["image_id"] == im["id"]] for name, im in by_name.items()}
    anns["000005.jpg"][0]["bbox"][2] += 500  # reaches outside its image: clipped, a warning
    anns["000003.jpg"][0]["bbox"][2] = 0  # no area: an error, the data set refuses the image
    (tmp_path / "ann.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "tools/browse.py", "configs/faster_rcnn/shapes.yaml", "data=coco",
                             f"data.val.dataset.ann_file={tmp_path / 'ann.json'}",
                             f"data.val.dataset.image_dir={MINI / 'val'}", "--out", str(out), "--limit", "3"],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    page = read_page(out / "gallery.html")
    assert [c["title"] for c in page.cards] == ["000005.jpg", "000001.jpg", "000002.jpg"]
    assert {kind for kind, _ in page.cards[0]["tags"]} == {"box outside image"}
    assert any(line.startswith("warning: box outside image") for line in page.cards[0]["lines"])
    assert (out / "skipped.txt").read_text() == "000003.jpg\n"
    text = (out / "gallery.html").read_text()
    assert "1 image(s) with errors are left out" in text and "degenerate box" in text


def test_browse_overlays_the_label_maps_of_a_segmentation_set(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    source = ShapesDataset(split="val", num_images=3, image_size=64, seed=0)
    for i in range(3):
        record = source.load(i)
        cv2.imwrite(str(images / f"{i}.png"), record.image[:, :, ::-1])
        write_label_map(masks / f"{i}.png", record.sem_seg)
    config = tmp_path / "seg.yaml"
    config.write_text(yaml.safe_dump({"data": {"val": {"dataset": {
        "name": "seg_folder", "image_dir": str(images), "mask_dir": str(masks),
        "class_names": ["background", "circle", "square", "triangle"]}, "batch_size": 1}}}))
    result = subprocess.run([sys.executable, "tools/browse.py", str(config), "--out", str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    cards = read_page(tmp_path / "out" / "gallery.html").cards
    assert [c["title"] for c in cards] == ["0.png", "1.png", "2.png"]
    names = ["background", "circle", "square", "triangle"]
    for i, card in enumerate(cards):
        present = [names[v] for v in np.unique(source.load(i).sem_seg) if 0 < v < 4]
        assert card["classes"] == present


@pytest.mark.parametrize("args, message", [
    (["configs/faster_rcnn/shapes.yaml", "--limit", "0"], "--limit must be at least 1"),
    (["configs/faster_rcnn/shapes.yaml", "--split", "test"], "split 'test'"),
    (["no/such/config.yaml"], "no/such/config.yaml"),
    (["configs/faster_rcnn/shapes.yaml", "--out", "pyproject.toml"], "--out pyproject.toml: is a file"),
], ids=["limit", "split", "config", "out-file"])
def test_browse_bad_input_is_one_error_line(args, message):
    result = subprocess.run([sys.executable, "tools/browse.py", *args], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr

