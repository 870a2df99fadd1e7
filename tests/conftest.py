import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shapes_on_disk(tmp_path_factory):
    """The shapes val split (24 images) written in COCO and VOC layouts."""
    from detseg.data.export import export_coco, export_voc
    from detseg.data.shapes import ShapesDataset

    out = tmp_path_factory.mktemp("shapes")
    dataset = ShapesDataset(split="val", num_images=24, seed=3)
    with warnings.catch_warnings():
        coco_json = export_coco(dataset, out / "coco", "val")
        export_voc(dataset, out / "voc", "val")
    return {"dataset": dataset, "coco_json": coco_json, "coco_images": out / "coco" / "val",
            "voc_root": out / "voc"}
