"""``data.<split>.cache``: each image decoded once, later epochs served from memory, and the
kept pixels protected from transforms that would write into them."""

from pathlib import Path

import numpy as np
import pytest

from detseg.data.loader import build_dataset

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "datasets" / "shapes_coco_mini"


def coco_mini(cache: bool, transforms: list | None = None):
    return build_dataset({"dataset": {"name": "coco", "ann_file": str(MINI / "annotations" / "instances_val.json"),
                                      "image_dir": str(MINI / "val")},
                          "transforms": transforms or [], "cache": cache}, "data.train")


def counting_loads(dataset) -> list[int]:
    loads, original = [], dataset.load
    dataset.load = lambda index: loads.append(index) or original(index)
    return loads


def test_a_cached_data_set_reads_each_image_once_and_gives_the_same_samples():
    cached, plain = coco_mini(cache=True), coco_mini(cache=False)
    cached_loads, plain_loads = counting_loads(cached), counting_loads(plain)
    for _epoch in range(2):
        for index in range(len(cached)):
            a, b = cached[index], plain[index]
            assert np.array_equal(a.image.numpy(), b.image.numpy())
            assert np.array_equal(a.gt.boxes.tensor.numpy(), b.gt.boxes.tensor.numpy())
    assert cached_loads == list(range(len(cached)))  # once each
    assert plain_loads == 2 * list(range(len(plain)))  # every epoch


def test_kept_pixels_are_read_only_so_an_in_place_transform_fails_loudly():
    dataset = coco_mini(cache=True)
    dataset[0]
    record = dataset._record(0)
    with pytest.raises(ValueError, match="read-only"):
        record.image[0, 0, 0] = 1


SHAPES_CONFIGS = sorted(path for path in (ROOT / "configs").rglob("*.yaml")
                        if "/data: shapes" in path.read_text() or "- data: shapes" in path.read_text())


@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=lambda path: str(path.relative_to(ROOT / "configs")))
def test_every_shapes_config_keeps_its_drawn_images_and_augments_them_as_without(config):
    """configs/data/shapes.yaml turns the cache on: each experiment's training transforms must
    leave the kept pixels alone and give the samples they give without it."""
    from detseg.config import load_config, to_plain

    train = to_plain(load_config(config))["data"]["train"]
    assert train["cache"]
    train.pop("proposals", None)  # Fast R-CNN's proposal file: made by tools/gen_proposals.py, not pixels
    cached, plain = build_dataset(train, "data.train"), build_dataset({**train, "cache": False}, "data.train")
    for _epoch in range(2):
        for index in range(4):
            a, b = cached[(index, 7)], plain[(index, 7)]
            assert np.array_equal(a.image.numpy(), b.image.numpy())
            assert np.array_equal(a.gt.boxes.tensor.numpy(), b.gt.boxes.tensor.numpy())
