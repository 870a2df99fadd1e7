"""Run a detseg model's exported ONNX graph under ONNX Runtime, behind ``model.predict``.

    ort_model, plan = onnxruntime_model(model, cache_dir="runs/demo/best.onnxruntime")
    print(plan.describe())    # inference: onnxruntime 1.23.2, CPU provider, ...
    ort_model.predict(samples)  # list[Instances] / list[SemanticMap], as model.predict gives

``ort_model`` is a copy of ``model`` whose ``predict`` runs the graph that
:func:`detseg.deploy.export_model` writes, one image at a time, with onnxruntime's CPU
provider. The graph is exported from ``model`` on first use and **checked once against
PyTorch** on the image it was exported with (:func:`detseg.deploy.detection_difference`,
the export's parity comparison: same count and labels, boxes and scores within
``tolerance``, or the same label map); a graph that differs raises
:class:`~detseg.deploy.ExportError` and is not kept.

**One graph per image size for detectors**: an exported detector runs its network at the
size it was traced at and letterboxes other sizes (:mod:`detseg.deploy`), which is not what
PyTorch computes on them. So each image size that reaches the network (after the config's
validation transforms) gets its own export, and the outputs equal PyTorch's at every size. A
config that resizes to one size exports once. Segmenters take any size in one graph (but a
sliding-window one, whose window grid is traced: one per size). An image of a new size in
which PyTorch detects nothing cannot be traced (empty outputs freeze in the trace): PyTorch's
empty prediction is returned for it, and the next image of that size is tried.

**Cache**: ``cache_dir/<fingerprint>-<H>x<W>.onnx`` (``-any`` for a size-free graph), the
fingerprint a hash of the weights, the model config and the torch version; a file there is
reused without exporting or checking again, and a new one removes the graphs of other
fingerprints from ``cache_dir`` (an earlier checkpoint's). A ``cache_dir`` that is not given
or cannot be written falls back to the temporary folder, where nothing is removed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.errors import ConfigError
from detseg.models.base import Segmenter
from detseg.structures import DetSample, Instances, SemanticMap

INSTALL_HINT = "pip install detseg[export]"


def require_onnxruntime() -> str:
    """onnxruntime's version; one line naming the install command where it is missing.

    Raises:
        ConfigError: onnxruntime cannot be imported.
    """
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"runtime onnxruntime needs the onnxruntime package, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return onnxruntime.__version__


def fingerprint(model: nn.Module, config: Any = None) -> str:
    """16 hex digits naming ``model``'s weights, its ``config`` and the torch version that exports."""
    digest = hashlib.sha256(f"{torch.__version__}\n{json.dumps(config, sort_keys=True, default=str)}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def writable_cache(cache_dir: str | Path | None) -> Path:
    """``cache_dir`` made, or ``<tmp>/detseg-onnxruntime`` where it is not given or not writable."""
    fallback = Path(tempfile.gettempdir()) / "detseg-onnxruntime"
    for folder in ([Path(cache_dir)] if cache_dir is not None else []) + [fallback]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise ConfigError(f"no writable folder for the ONNX Runtime cache (tried {cache_dir} and the temporary folder)")


@dataclass(frozen=True)
class OnnxRuntimePlan:
    """How ``runtime=onnxruntime`` runs, said in :meth:`describe`."""

    version: str
    cache_dir: Path
    tolerance: float

    def describe(self) -> str:
        check = ("not checked against PyTorch" if self.tolerance == float("inf") else
                 f"checked once against PyTorch (boxes and scores within {self.tolerance:g})")
        return (f"inference: onnxruntime {self.version}, CPU provider, fp32 graph exported per image size to "
                f"{self.cache_dir}, {check}")


class OnnxRuntimePredict:
    """``predict(samples)`` of a detseg model through its exported graphs (module docstring)."""

    def __init__(self, model: nn.Module, cache_dir: Path, name: str, tolerance: float = 1e-3,
                 prune: bool = False) -> None:
        from detseg.deploy import ExportableModel, input_shape

        self.model = model
        self.reference = ExportableModel(model).eval()  # the PyTorch side of the check
        self.segments = isinstance(model, Segmenter)
        self.cache_dir, self.name, self.tolerance, self.prune = cache_dir, name, tolerance, prune
        self.any_size = self.segments and input_shape(model, torch.zeros(3, 1, 1))[1] is None
        self.sessions: dict[str, Callable[[Tensor], tuple[Tensor, ...]]] = {}

    @torch.no_grad()
    def __call__(self, samples: Sequence[DetSample]) -> list[Instances | SemanticMap]:
        return [self._predict_one(sample) for sample in samples]

    def _predict_one(self, sample: DetSample) -> Instances | SemanticMap:
        image = sample.image.cpu()
        key = "any" if self.any_size else f"{image.shape[-2]}x{image.shape[-1]}"
        run = self.sessions.get(key) or self._load_or_export(key, image)
        if run is None:  # nothing detected, so nothing to trace at this size yet: PyTorch's (empty) answer
            return self.model.predict([sample])[0]
        return self._prediction(run(image), sample)

    def _load_or_export(self, key: str, image: Tensor) -> Callable[[Tensor], tuple[Tensor, ...]] | None:
        from detseg.deploy import ExportError, export_model, load_exported

        path = self.cache_dir / f"{self.name}-{key}.onnx"
        if not path.is_file():
            expected = self.reference(image)
            if not self.segments and not len(expected[0]):
                return None
            partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.onnx")
            try:
                with warnings.catch_warnings():  # the exporter's advice on opsets: the check below decides
                    warnings.simplefilter("ignore")
                    export_model(self.model, image, "onnx", partial)
                difference = self._difference(expected, load_exported(partial)(image))
                if difference > self.tolerance:
                    raise ExportError(f"{path}: the ONNX graph does not reproduce the PyTorch model on a "
                                      f"{key} image: difference {difference:.3g} > {self.tolerance:g} (boxes and "
                                      f"scores, or the fraction of label-map pixels); use runtime torch")
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            if self.prune:  # graphs of an earlier checkpoint or config in this folder
                for old in self.cache_dir.glob("*.onnx"):
                    if not old.name.startswith(f"{self.name}-") and ".partial." not in old.name:
                        old.unlink(missing_ok=True)
        self.sessions[key] = load_exported(path)
        return self.sessions[key]

    def _difference(self, expected, got: tuple[Tensor, ...]) -> float:
        """The parity check's measure (:func:`detseg.deploy.detection_difference`), or the
        fraction of label-map pixels that differ (``inf`` for another shape)."""
        from detseg.deploy import detection_difference

        if not self.segments:
            return detection_difference(expected, got)
        labels = got[0].to(expected.dtype)
        return float((labels != expected).float().mean()) if labels.shape == expected.shape else float("inf")

    def _prediction(self, outputs: tuple[Tensor, ...], sample: DetSample) -> Instances | SemanticMap:
        from detseg.deploy import exported_instances

        if not self.segments:
            return exported_instances(outputs, tuple(sample.image.shape[-2:]), sample)
        labels = outputs[0].long()
        if tuple(labels.shape) != tuple(sample.orig_size):  # a resizing transform: nearest, not logits
            labels = F.interpolate(labels[None, None].float(), size=tuple(sample.orig_size), mode="nearest")[0, 0]
        return SemanticMap(labels.long())


def onnxruntime_model(model: nn.Module, cache_dir: str | Path | None = None, config: Any = None,
                      tolerance: float = 1e-3) -> tuple[nn.Module, OnnxRuntimePlan]:
    """A copy of ``model`` (eval mode, on the CPU) whose ``predict`` runs under ONNX Runtime,
    and the plan that says so (module docstring).

    Args:
        model: a detseg detector or segmenter; left as it is.
        cache_dir: folder for the exported graphs, which it owns (graphs of other weights
            there are removed); the temporary folder when ``None``.
        config: the model's config, part of the cache file names (a score threshold that
            changes the graph changes the name).
        tolerance: the once-per-graph check's bound on box/score differences (pixels / score)
            or on the fraction of label-map pixels that differ.

    Raises:
        ConfigError: onnxruntime is not installed (the message names ``pip install detseg[export]``).
    """
    version = require_onnxruntime()
    torch_model = copy.deepcopy(model).cpu().eval()  # exports, checks, and answers where nothing is detected
    folder = writable_cache(cache_dir)
    own = cache_dir is not None and folder == Path(cache_dir)  # not the shared temporary folder
    predict = OnnxRuntimePredict(torch_model, folder, fingerprint(torch_model, config), tolerance, prune=own)
    runner = copy.copy(torch_model)  # shares the submodules; only its own predict differs
    runner.predict = types.MethodType(lambda self, samples: predict(samples), runner)
    return runner, OnnxRuntimePlan(version, folder, tolerance)
