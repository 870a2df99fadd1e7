"""Export a trained model to ONNX or TorchScript, and check the export against PyTorch.

The exported graph takes one image, ``uint8[3, H, W]`` RGB after the config's validation
transforms (the normalisation is inside the graph), and returns:

- detectors: ``boxes float32[N, 4]`` (xyxy pixels of that image), ``scores float32[N]``,
  ``labels int64[N]`` (``0..C-1``), postprocessing (score threshold, NMS, top-k) included,
  and for Mask R-CNN ``masks uint8[N, H, W]`` (0/1, pasted into the image);
- segmenters: ``labels int64[H, W]``, the class per pixel (the :class:`SemanticMap`'s labels).

Every export takes any image size. Segmenters are fully convolutional: the padding to the
backbone's stride is computed in the graph. A detector's network runs at the size it was
traced at (its anchors or default boxes, and the numbers of boxes its stages keep, are laid
out for it): the graph letterboxes the image to that size (one scale factor that fits it,
bilinear, padded bottom and right, :func:`letterbox`), detects, and maps the boxes (and
masks) back to the image. An image of the traced size passes through unchanged, so on the
validation images, which the config's transforms bring to that size, the export computes
what PyTorch does.

:func:`parity_check` runs the exported file (onnxruntime, or ``torch.jit.load``) and the
PyTorch model on validation images and compares their outputs and their metric; it raises
:class:`ExportError` when they differ beyond the tolerance.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.errors import DetsegError
from detseg.models.base import Detector, Segmenter
from detseg.models.preprocessor import rescale_instances
from detseg.ops.roi_align_fast import reference_kernels
from detseg.structures import Boxes, DetSample, Instances, SemanticMap

Format = Literal["onnx", "torchscript"]


class ExportError(DetsegError):
    """The export failed, or its outputs differ from the PyTorch model's."""


def image_size_tensor(image: Tensor) -> Tensor:
    """``float[2]``: ``(height, width)`` of ``image[..., H, W]``, read in the graph when traced."""
    return torch._shape_as_tensor(image)[-2:].float()


def letterbox(image: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """``image[3, H, W]`` (0-255) scaled by one factor ``s = min(size_h / H, size_w / W)`` to
    ``round(s H) x round(s W)`` (bilinear), then padded with 0 on the bottom and right to
    ``float[3, *size]``; returns it and ``s`` (a 0-dim tensor). An image of ``size`` comes
    back unchanged, with ``s = 1``."""
    shape = image_size_tensor(image)
    scale = (torch.tensor(size, dtype=torch.float32) / shape).min()
    scaled = (shape * scale).round().long()
    # traced, the sizes must stay tensors (ints would freeze the example's); eager, ints
    new_size = [scaled[0], scaled[1]] if torch.jit.is_tracing() else [int(scaled[0]), int(scaled[1])]
    resized = F.interpolate(image[None].float(), size=new_size, mode="bilinear", align_corners=False)[0]
    padded = F.pad(resized, (0, size[1] - resized.shape[-1], 0, size[0] - resized.shape[-2]))
    return padded, scale


class ExportableModel(nn.Module):
    """``forward(image uint8[3, H, W]) -> tensors``: a detseg model behind a plain tensor
    interface that the ONNX and TorchScript tracers can follow.

    ``network_size``: ``(height, width)`` a detector's network runs at (the traced size); any
    input is letterboxed to it (:func:`letterbox`) and its detections mapped back."""

    def __init__(self, model: nn.Module, network_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.segments = isinstance(model, Segmenter)
        self.has_masks = isinstance(model, Detector) and model.predicts_masks
        self.network_size = None if self.segments else network_size

    def forward(self, image: Tensor):
        if self.segments or self.network_size is None:
            return self._predict(image)
        network_input, scale = letterbox(image, self.network_size)
        boxes, scores, labels, *masks = self._predict(network_input)
        size = image_size_tensor(image)
        boxes = torch.min((boxes / scale).clamp(min=0), size.flip(0).repeat(2))  # xyxy: (w, h, w, h)
        if masks:
            masks = [self._masks_at_image_size(masks[0], image, scale)]
        return (boxes, scores, labels, *masks)

    def _predict(self, image: Tensor):
        sample = DetSample(image=image, image_id=0, orig_size=(image.shape[-2], image.shape[-1]))
        prediction = self.model.predict([sample])[0]
        if self.segments:
            return prediction.labels
        outputs = (prediction.boxes.tensor, prediction.scores, prediction.labels)
        return (*outputs, prediction.masks.to(torch.uint8)) if self.has_masks else outputs

    def _masks_at_image_size(self, masks: Tensor, image: Tensor, scale: Tensor) -> Tensor:
        """``uint8[N, h, w]`` masks of the letterboxed image -> ``uint8[N, H, W]`` of ``image``:
        the scaled image's region, resized by nearest neighbour."""
        region = (image_size_tensor(image) * scale).round().long()
        cropped = masks[:, None, : region[0], : region[1]].float()  # [N, 1, h, w]: N may be 0
        return F.interpolate(cropped, size=(image.shape[-2], image.shape[-1]), mode="nearest")[:, 0].to(torch.uint8)

    def output_names(self) -> list[str]:
        if self.segments:
            return ["labels"]
        return ["boxes", "scores", "labels", "masks"] if self.has_masks else ["boxes", "scores", "labels"]


SHAPE_FILE = "detseg_input_shape.json"
"""Extra file in a TorchScript export: the input shape it takes, ``null`` where any size goes."""


def input_shape(model: nn.Module, example: Tensor) -> list[int | None]:
    """``[3, H, W]`` of what the export of ``model`` takes; ``None`` for a size that may vary
    (every model but a segmenter that predicts by sliding window, whose window grid is traced)."""
    if isinstance(model, Segmenter) and not model.any_input_size:
        return list(example.shape)
    return [3, None, None]


def export_model(model: nn.Module, example: Tensor, fmt: Format, out: str | Path, opset: int = 17) -> Path:
    """Trace ``model`` on ``example`` (``uint8[3, H, W]``) and write ``out``, for the image
    sizes :func:`input_shape` says."""
    if isinstance(model, Detector) and not model.proposals_in_graph:
        raise ExportError(f"{type(model).__name__} takes its proposals from selective search or a proposal "
                          f"file, outside the network, so no graph can hold it; export a Faster R-CNN (RPN "
                          f"proposals) instead")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportableModel(model, network_size=(example.shape[-2], example.shape[-1])).eval()
    if not wrapper.segments:
        with torch.no_grad():
            found = len(wrapper(example)[0])
        if not found:  # the tracer would freeze empty shapes (and the ONNX pass can crash on them)
            raise ExportError("the example image has no detections; export with an image the model detects "
                              "something in (tools/export.py uses the first validation image)")
    with torch.no_grad(), warnings.catch_warnings(), reference_kernels():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            shape = input_shape(model, example)
            if fmt == "torchscript":
                torch.jit.save(torch.jit.trace(wrapper, (example,), check_trace=False), str(out),
                               _extra_files={SHAPE_FILE: json.dumps(shape)})
            elif fmt == "onnx":
                dynamic = None
                if shape[1] is None:
                    dynamic = {"image": {1: "height", 2: "width"}}
                    dynamic.update({"labels": {0: "height", 1: "width"}} if wrapper.segments else
                                   {"masks": {1: "height", 2: "width"}} if wrapper.has_masks else {})
                torch.onnx.export(wrapper, (example,), str(out), dynamo=False, opset_version=opset,
                                  input_names=["image"], output_names=wrapper.output_names(),
                                  dynamic_axes=dynamic)
            else:
                raise ExportError(f"unknown export format '{fmt}' (onnx, torchscript)")
        except ExportError:
            raise
        except Exception as exc:  # the tracers raise many kinds; say which model and format
            raise ExportError(f"exporting {type(model).__name__} to {fmt} failed: {exc}") from exc
    return out


def load_exported(path: str | Path) -> Callable[[Tensor], tuple[Tensor, ...]]:
    """A function ``image uint8[3, H, W] -> tuple of output tensors`` running the file."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the threads PyTorch was given
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        expected = [d if isinstance(d, int) else None for d in session.get_inputs()[0].shape]

        def run_onnx(image: Tensor) -> tuple[Tensor, ...]:
            check_input_shape(path, expected, image)
            return tuple(torch.from_numpy(o) for o in session.run(None, {"image": image.cpu().numpy()}))

        return run_onnx
    extra = {SHAPE_FILE: ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    script_expected = json.loads(extra[SHAPE_FILE]) if extra[SHAPE_FILE] else None

    def run_script(image: Tensor) -> tuple[Tensor, ...]:
        if script_expected is not None:
            check_input_shape(path, script_expected, image)
        with torch.no_grad():
            out = module(image)
        return out if isinstance(out, tuple) else (out,)

    return run_script


def check_input_shape(path: Path, expected: list[int | None], image: Tensor) -> None:
    got = list(image.shape)
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        shown = ["any" if e is None else e for e in expected]
        raise ExportError(f"{path} was exported for images of shape {shown} (uint8, 3 x H x W), got {got}; "
                          f"resize to its size first")


@dataclass
class ParityReport:
    """What :func:`parity_check` compared and found.

    ``images``: validation images both ran on. ``max_output_diff``: the largest difference
    over them: for detectors, box coordinates (pixels) or scores, or the fraction of mask
    pixels that differ (``inf`` where an image's detection count or labels differ); for
    segmenters, the fraction of label-map pixels that differ. ``metric``, ``torch_metric``,
    ``exported_metric``: the evaluator's main metric (``AP``, or ``mIoU`` for segmenters)
    of each. ``mismatched_images``: indices of the images whose detections differ beyond the
    tolerance. ``mask_metrics``: mask AP of PyTorch and of the export (Mask R-CNN only).
    ``detections``: how many detections PyTorch made over all the images, each compared with
    the export's (an image whose count differs is a mismatch); 0 for segmenters.
    """

    images: int
    max_output_diff: float
    metric: str
    torch_metric: float
    exported_metric: float
    mismatched_images: list[int]
    mask_metrics: tuple[float, float] | None = None
    detections: int = 0

    def agrees(self, tolerance: float) -> bool:
        pairs = [(self.torch_metric, self.exported_metric), *([self.mask_metrics] if self.mask_metrics else [])]
        metrics_ok = all((math.isnan(a) and math.isnan(b)) or abs(a - b) <= tolerance for a, b in pairs)
        outputs_ok = not self.mismatched_images and (self.metric != "mIoU" or self.max_output_diff <= tolerance)
        return metrics_ok and outputs_ok

    def __str__(self) -> str:
        what = "box difference (pixels)" if self.metric != "mIoU" else "fraction of pixels that differ"
        compared = f" ({self.detections} detections)" if self.metric != "mIoU" else ""
        return (f"parity on {self.images} images{compared}: max {what} {self.max_output_diff:.3g}; {self.metric} "
                f"PyTorch {self.torch_metric:.4f} vs exported {self.exported_metric:.4f}"
                + (f"; mask AP PyTorch {self.mask_metrics[0]:.4f} vs exported {self.mask_metrics[1]:.4f}"
                   if self.mask_metrics else "")
                + (f"; images whose detections differ: {self.mismatched_images[:10]}" if self.mismatched_images else ""))


def parity_check(model: nn.Module, exported: str | Path, samples: Sequence[DetSample],
                 make_evaluator: Callable[[], Any], tolerance: float = 1e-3) -> ParityReport:
    """Run both on ``samples`` (validation images with ground truth) and compare.

    Detections must agree image by image (same count, labels, boxes within ``tolerance``
    pixels, scores within ``tolerance``, mask pixels differing in at most that fraction),
    and the evaluator's main metric (``AP``, and ``mask_AP`` for Mask R-CNN, or ``mIoU`` for
    segmentation) within ``tolerance``. Raises :class:`ExportError` otherwise.
    """
    run = load_exported(exported)
    reference = ExportableModel(model).eval()
    segments = reference.segments
    image_ids = [sample.image_id for sample in samples]
    torch_eval, exported_eval = (restrict_ground_truth(make_evaluator(), image_ids) for _ in range(2))
    worst, mismatched, detections = 0.0, [], 0
    for index, sample in enumerate(samples):
        with torch.no_grad():
            expected = reference(sample.image)
        try:
            got = run(sample.image)
        except ExportError:
            raise
        except Exception as exc:  # e.g. a shape the tracer froze from the example image
            raise ExportError(f"{exported} fails on validation image {index} where PyTorch runs: {exc}") from exc
        if segments:
            expected_map, got_map = expected, got[0].to(expected.dtype)
            if got_map.shape != expected_map.shape:
                raise ExportError(f"{exported}: label map of shape {tuple(got_map.shape)} for image {index}, "
                                  f"PyTorch gives {tuple(expected_map.shape)}")
            worst = max(worst, float((got_map != expected_map).float().mean()))
            torch_eval.update([SemanticMap(expected_map)], [sample.gt_sem_seg])
            exported_eval.update([SemanticMap(got_map)], [sample.gt_sem_seg])
            continue
        detections += len(expected[0])
        difference = detection_difference(expected, got)
        worst = max(worst, difference)
        if difference > tolerance:
            mismatched.append(index)
        size = (sample.image.shape[-2], sample.image.shape[-1])
        torch_eval.update([exported_instances(expected, size, sample)], [sample.image_id])
        exported_eval.update([exported_instances(got, size, sample)], [sample.image_id])
    metric = "mIoU" if segments else "AP"
    torch_results, exported_results = torch_eval.compute(), exported_eval.compute()
    masks = (torch_results["mask_AP"], exported_results["mask_AP"]) if "mask_AP" in torch_results else None
    report = ParityReport(len(samples), worst, metric, torch_results[metric], exported_results[metric], mismatched,
                          masks, detections)
    if not report.agrees(tolerance):
        raise ExportError(f"{exported} does not reproduce the PyTorch model (tolerance {tolerance:g}): {report}")
    return report


def restrict_ground_truth(evaluator: Any, image_ids: Sequence[Any]) -> Any:
    """A results evaluator scoring only ``image_ids`` (the images a parity check ran on)."""
    gt = getattr(evaluator, "ground_truth", None)
    if gt is not None:
        keep = set(image_ids)
        evaluator.ground_truth = {**gt, "images": [im for im in gt["images"] if im["id"] in keep],
                                  "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    return evaluator


def detection_difference(expected: tuple[Tensor, ...], got: tuple[Tensor, ...]) -> float:
    """The largest box or score difference, or fraction of mask pixels that differ; ``inf``
    when counts, labels or mask sizes differ."""
    boxes, scores, labels, *masks = expected
    got_boxes, got_scores, got_labels, *got_masks = got
    if got_boxes.shape != boxes.shape or not torch.equal(got_labels.to(labels.dtype), labels):
        return math.inf
    if not len(boxes):
        return 0.0
    differences = [(got_boxes - boxes).abs().max(), (got_scores - scores).abs().max()]
    if masks:
        if got_masks[0].shape != masks[0].shape:
            return math.inf
        differences.append((got_masks[0].bool() != masks[0].bool()).float().mean())
    return float(max(differences))


def exported_instances(outputs: tuple[Tensor, ...], size: tuple[int, int], sample: DetSample) -> Instances:
    """Detections in the original image's coordinates, as the evaluator wants them."""
    boxes, scores, labels, *masks = outputs
    instances = Instances(Boxes(boxes.float()), labels.long(), size, scores=scores.float(),
                          masks=masks[0].bool() if masks else None)
    return rescale_instances(instances, tuple(sample.orig_size))


__all__ = ["ExportError", "ExportableModel", "ParityReport", "detection_difference", "export_model", "exported_instances",
           "input_shape", "load_exported", "parity_check"]
