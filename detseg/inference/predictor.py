"""Predictions on images from a checkpoint alone (it carries its config)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detseg.data.io import read_image
from detseg.data.record import ImageRecord
from detseg.data.transforms import build_transforms
from detseg.engine.checkpoint import inference_weights, load_checkpoint, load_model_state
from detseg.errors import ConfigError, DataError
from detseg.inference.onnx_runtime import OnnxRuntimePlan
from detseg.inference.optimize import InferencePlan, check_precision
from detseg.inference.runtime import check_runtime, prepare_inference
from detseg.models.base import Segmenter
from detseg.registry import UnknownNameError
from detseg.structures import Instances, SemanticMap

ImageInput = str | Path | np.ndarray | Any  # a path, an HxWx3 uint8 RGB array, or a PIL image


def to_rgb_array(image: ImageInput) -> np.ndarray:
    """Read or convert one image to ``uint8[H, W, 3]`` RGB; bad input names itself."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"an image array must be uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise DataError(f"image array has no pixels: shape {image.shape}")
        return image
    raise DataError(f"cannot read an image from {type(image).__name__}; give a path, an array or a PIL image")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that exists on this machine.

    Raises:
        ConfigError: not a device name, or a CUDA / MPS device that is not available.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device '{device}' is not a device name (cpu, cuda, cuda:1, mps)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{device}': no CUDA device is available; use cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{device}': there are {torch.cuda.device_count()} CUDA device(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{device}': MPS is not available; use cpu")
    return resolved


class Predictor:
    """Runs a trained model on images.

    Example:
        >>> p = Predictor.from_checkpoint("runs/faster_rcnn/shapes/best.pt", device="cpu")
        >>> instances = p("photo.jpg")          # Instances in the photo's pixel coordinates
        >>> results = p.predict_batch(paths, batch_size=8)

    Detectors return :class:`Instances`; segmenters return an ``int64[H, W]`` label map at
    the image's size. Validation transforms of the training config (e.g. a resize) are
    applied and predictions mapped back.

    ``precision`` (``fp32``, ``bf16`` or ``auto``) picks the inference path
    (:func:`~detseg.inference.optimize.optimize_for_inference`): predictions come from an
    optimised copy of the model, made on the first prediction (or when :attr:`plan` is
    first read); ``model`` itself stays as it was loaded.

    ``runtime`` is ``torch`` or ``onnxruntime``: the latter exports the model to ONNX (one
    graph per image size for detectors; cached in ``cache_dir``, next to the checkpoint for
    :meth:`from_checkpoint`, else in the temporary folder), checks each graph once against
    PyTorch and predicts with onnxruntime's CPU provider
    (:mod:`detseg.inference.onnx_runtime`); ``precision`` must then be ``fp32`` or ``auto``.
    """

    def __init__(self, model: torch.nn.Module, config: dict[str, Any], class_names: Sequence[str],
                 device: str | torch.device = "cpu", precision: str = "auto", runtime: str = "torch",
                 cache_dir: str | Path | None = None) -> None:
        self.device = resolve_device(device)
        self.precision = check_precision(precision)
        self.runtime = check_runtime(runtime, precision, self.device)
        self.cache_dir = cache_dir
        self.model = model.to(self.device).eval()
        self._optimized: tuple[torch.nn.Module, InferencePlan | OnnxRuntimePlan] | None = None
        self.config = config
        self.class_names = list(class_names)
        val = (config.get("data") or {}).get("val") or {}
        self.transforms = build_transforms(val.get("transforms", []), "data.val.transforms")

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu",
                        precision: str = "auto", runtime: str = "torch") -> Predictor:
        """The model and config in checkpoint ``path``; onnxruntime's graphs are cached in
        ``<path without suffix>.onnxruntime/`` beside it."""
        from detseg.models import build_model
        from detseg.models.build import with_num_classes_lifted

        state = load_checkpoint(path)
        if not isinstance(state, dict) or "config" not in state or "model" not in state:
            raise DataError(f"{path} is not a detseg training checkpoint (no config/model inside)")
        config = state["config"]
        if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
            raise DataError(f"{path}: its config has no model section; not a detseg training checkpoint")
        try:
            model = build_model(with_num_classes_lifted(config["model"]), initialize=False)  # older runs' too
        except UnknownNameError as exc:
            raise UnknownNameError(f"{path}: its config cannot be built: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{path}: its config cannot be built: {exc}") from None
        load_model_state(model, inference_weights(state), str(path))
        return cls(model, config, state.get("meta", {}).get("class_names", []), device, precision, runtime,
                   Path(path).with_suffix(".onnxruntime"))

    @property
    def plan(self) -> InferencePlan | OnnxRuntimePlan:
        """How predictions run here (``plan.describe()`` says it in one line)."""
        return self._runner()[1]

    def _runner(self) -> tuple[torch.nn.Module, InferencePlan | OnnxRuntimePlan]:
        if self._optimized is None:
            self._optimized = prepare_inference(self.model, self.precision, self.runtime, self.cache_dir,
                                                self.config.get("model"))
        return self._optimized

    @property
    def segments(self) -> bool:
        """True for a segmenter (:class:`SemanticMap`), False for a detector (:class:`Instances`)."""
        return isinstance(self.model, Segmenter)

    def __call__(self, image: ImageInput) -> Instances | SemanticMap:
        return self.predict_batch([image], batch_size=1)[0]

    @torch.no_grad()
    def predict_batch(self, images: Iterable[ImageInput], batch_size: int = 8) -> list[Instances | SemanticMap]:
        images = list(images)
        runner, _ = self._runner()
        out: list[Instances | SemanticMap] = []
        for start in range(0, len(images), batch_size):
            samples = []
            for k, image in enumerate(images[start:start + batch_size]):
                record = ImageRecord.unlabeled(to_rgb_array(image), image_id=start + k + 1)
                samples.append(self.transforms(record).to_sample(with_instances=False).to(self.device))
            out.extend(runner.predict(samples))
        return out
