"""Backbones: ``forward(x) -> dict[name, Tensor]`` and ``output_shape()``."""

from detseg.models.backbones.base import Backbone, FeatureSpec
from detseg.models.backbones.mobilenet import MobileNetV3Large
from detseg.models.backbones.ssd_vgg import SSDVGG16
from detseg.models.backbones.ssdlite_mobilenet import SSDLiteMobileNetV3
from detseg.models.backbones.timm_models import TimmBackbone
from detseg.models.backbones.tiny import TinyConvNet
from detseg.models.backbones.torchvision_models import TorchvisionBackbone

__all__ = ["SSDVGG16", "Backbone", "FeatureSpec", "MobileNetV3Large", "SSDLiteMobileNetV3", "TimmBackbone", "TinyConvNet",
           "TorchvisionBackbone"]
