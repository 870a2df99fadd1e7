"""torchvision's SSD300 and SSDLite320 checkpoints -> detseg's one-stage detector with the
SSD head.

torchvision's class convolutions score ``A`` default boxes per cell for 91 classes,
background first, in channels ordered (box, class); detseg's head puts background last
(:func:`background_last_per_box`). Everything else keeps its layout.
"""

from __future__ import annotations

from torch import Tensor

from detseg.zoo.entries import ZooEntry, register_zoo_entry
from detseg.zoo.keymap import Rule

COCO_CLASSES = 90  # torchvision's 91 COCO ids, background (0) left out


def background_last_per_box(tensor: Tensor) -> Tensor:
    """Class conv weights or biases ``[A * (C + 1), ...]``, ordered (box, class) with
    background first -> the same with background last."""
    per_box = tensor.reshape(-1, COCO_CLASSES + 1, *tensor.shape[1:])  # [A, C + 1, ...]
    return per_box.roll(-1, dims=1).reshape(tensor.shape)


SSD300_VGG16 = (
    Rule(r"backbone\.features\.(\d+\.(weight|bias))$", r"backbone.conv4_3.\1"),  # VGG-16 to conv4_3
    Rule(r"backbone\.scale_weight$", "backbone.l2norm.scale"),
    Rule(r"backbone\.extra\.0\.", "backbone.fc7."),  # pool4 .. conv5_3, pool5, fc6, fc7
    *(Rule(rf"backbone\.extra\.{k + 1}\.", f"backbone.extras.{k}.") for k in range(4)),  # conv8_2 .. conv11_2
    Rule(r"head\.classification_head\.module_list\.", "head.classifiers.", background_last_per_box),
    Rule(r"head\.regression_head\.module_list\.", "head.regressors."),
)

SSDLITE320_MOBILENET_V3_LARGE = (
    Rule(r"backbone\.features\.0\.", "backbone.stages.c4."),
    Rule(r"backbone\.features\.1\.", "backbone.stages.c5."),
    *(Rule(rf"backbone\.extra\.{k}\.", f"backbone.stages.c{k + 6}.") for k in range(4)),
    # each predictor: depthwise conv + BN + ReLU6 (.0), then the 1x1 conv that scores (.1)
    Rule(r"head\.classification_head\.module_list\.(\d+)\.1\.", r"head.classifiers.\1.1.", background_last_per_box),
    Rule(r"head\.classification_head\.module_list\.", "head.classifiers."),
    Rule(r"head\.regression_head\.module_list\.", "head.regressors."),
)

register_zoo_entry(ZooEntry(
    "ssd300_vgg16", "configs/model/tv_ssd300_vgg16.yaml", SSD300_VGG16,
    class_layers=tuple(f"head.classifiers.{i}." for i in range(6)), num_classes=COCO_CLASSES,
))
register_zoo_entry(ZooEntry(
    "ssdlite320_mobilenet_v3_large", "configs/model/tv_ssdlite320_mobilenet_v3_large.yaml",
    SSDLITE320_MOBILENET_V3_LARGE,
    class_layers=tuple(f"head.classifiers.{i}.1." for i in range(6)), num_classes=COCO_CLASSES,
))
