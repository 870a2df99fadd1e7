"""The R-CNN family's model YAMLs are parallel: Fast, Faster and Mask R-CNN differ from each
other in at most three non-comment lines (a proposal source, an RoI head option, the name), and
R-CNN from Fast R-CNN in at most three (its RoI head option, the name, no FPN)."""

import difflib
from itertools import combinations
from pathlib import Path

import pytest

from detseg.config import load_node, to_plain
from detseg.models import build_model
from detseg.models.detectors import TwoStageDetector

MODELS = Path(__file__).resolve().parents[2] / "configs" / "model"
FAMILIES = {"tiny": ["faster_rcnn_tiny", "fast_rcnn_tiny", "mask_rcnn_tiny"],
            "r50_fpn": ["faster_rcnn_r50_fpn", "fast_rcnn_r50_fpn", "mask_rcnn_r50_fpn"]}
TINY = ["rcnn_tiny", *FAMILIES["tiny"]]


def lines(name: str) -> list[str]:
    return [line for line in (MODELS / f"{name}.yaml").read_text().splitlines() if not line.startswith("#")]


def changed_lines(a: list[str], b: list[str]) -> int:
    """Lines that differ: a replaced line counts once, an added or removed line once."""
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b).get_opcodes()
               if tag != "equal")


def test_changed_lines_counts_a_replacement_once():
    assert changed_lines(["a", "b", "c"], ["a", "x", "c", "d"]) == 2


@pytest.mark.parametrize("family", FAMILIES)
def test_family_members_differ_in_at_most_three_lines(family):
    for a, b in combinations(FAMILIES[family], 2):
        assert changed_lines(lines(a), lines(b)) <= 3, (a, b)


def test_rcnn_differs_from_fast_rcnn_in_at_most_three_lines():
    assert changed_lines(lines("rcnn_tiny"), lines("fast_rcnn_tiny")) <= 3


@pytest.mark.parametrize("name", TINY)
def test_tiny_family_members_build_what_their_names_say(name):
    model = build_model({**to_plain(load_node(MODELS / f"{name}.yaml")), "num_classes": 3})
    assert isinstance(model, TwoStageDetector)
    assert model.proposals_in_graph == (name in ("faster_rcnn_tiny", "mask_rcnn_tiny"))
    assert model.predicts_masks == (name == "mask_rcnn_tiny")
    pooler = {"fast_rcnn_tiny": "roi_pool", "rcnn_tiny": "crop_warp"}.get(name, "roi_align")
    assert model.roi_head.pooler.kind == pooler
    assert model.roi_head.reads_image == (name == "rcnn_tiny")
