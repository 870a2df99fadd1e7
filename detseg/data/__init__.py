"""Data sets (COCO, VOC, YOLO txt, image+mask folders, synthetic shapes), transforms and loaders.

Importing this package registers every data set and transform.
"""

from detseg.data.base import DetectionDataset, ImageSummary
from detseg.data.coco import CocoDataset
from detseg.data.loader import (
    DataConfig,
    LoaderConfig,
    build_dataloader,
    build_dataset,
    collate_samples,
)
from detseg.data.record import ImageRecord
from detseg.data.seg_folder import SegFolderDataset
from detseg.data.shapes import ShapesDataset
from detseg.data.ssd_augment import MinIoURandomCrop
from detseg.data.transforms import TransformPipeline, build_transforms
from detseg.data.voc import VocDataset
from detseg.data.yolo import YoloTxtDataset

__all__ = [
    "CocoDataset",
    "DataConfig",
    "DetectionDataset",
    "ImageRecord",
    "ImageSummary",
    "LoaderConfig",
    "MinIoURandomCrop",
    "SegFolderDataset",
    "ShapesDataset",
    "TransformPipeline",
    "VocDataset",
    "YoloTxtDataset",
    "build_dataloader",
    "build_dataset",
    "build_transforms",
    "collate_samples",
]
