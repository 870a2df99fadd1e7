"""Semantic segmenters: one Segmentor class; decoders U-Net, FCN, FCN head, ASPP; Tiramisu."""

from detseg.models.segmenters.base import SegDecoder
from detseg.models.segmenters.fcn import ASPPDecoder, FCNDecoder, FCNHead
from detseg.models.segmenters.segmentor import Segmentor, build_fcn, build_unet
from detseg.models.segmenters.tiramisu import build_tiramisu
from detseg.models.segmenters.unet import UNetDecoder

__all__ = ["ASPPDecoder", "FCNDecoder", "FCNHead", "SegDecoder", "Segmentor", "UNetDecoder", "build_fcn", "build_tiramisu", "build_unet"]
