"""Every registered data set yields samples that honour the DetSample contract."""

import pytest
import torch

import detseg.data  # noqa: F401 - registers data sets
from detseg.config import build
from detseg.registry import DATASETS


def node_for(name, repo_root):
    mini = repo_root / "datasets"
    return {
        "shapes": {"name": "shapes", "num_images": 2},
        "coco": {"name": "coco", "ann_file": str(mini / "shapes_coco_mini/annotations/instances_val.json"),
                 "image_dir": str(mini / "shapes_coco_mini/val")},
        "voc": {"name": "voc", "root": str(mini / "shapes_voc_mini"), "split": "val"},
        "seg_folder": {"name": "seg_folder", "image_dir": str(mini / "shapes_voc_mini/JPEGImages"),
                       "mask_dir": str(mini / "shapes_voc_mini/SegmentationClass"),
                       "class_names": ["background", "circle", "square", "triangle"]},
        "yolo_txt": {"name": "yolo_txt", "data_yaml": str(mini / "shapes_yolo_mini/data.yaml"), "split": "val"},
    }[name]


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_contract(name, repo_root):
    dataset = build(node_for(name, repo_root), DATASETS, "dataset")
    sample = dataset[0]
    assert sample.image.dtype == torch.uint8 and sample.image.shape[0] == 3
    assert isinstance(sample.image_id, int)
    if dataset.has_instances:
        assert sample.gt.boxes.tensor.dtype == torch.float32
        assert sample.gt.labels.dtype == torch.int64
        assert (sample.gt.labels >= 0).all() and (sample.gt.labels < dataset.num_classes).all()
        gt = dataset.coco_ground_truth()
        assert {im["id"] for im in gt["images"]} >= {sample.image_id}
    else:
        assert sample.gt_sem_seg.dtype == torch.int64
        assert sample.gt_sem_seg.shape == sample.image_size
