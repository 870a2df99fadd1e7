from detseg.models.segmenters.unet import Segmentor, UNetDecoder, build_unet

__all__ = ["Segmentor", "UNetDecoder", "build_unet"]
