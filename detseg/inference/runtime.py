"""Which runtime predicts: PyTorch on the fast path, or ONNX Runtime on the exported graph.

    runner, plan = prepare_inference(model, precision="auto", runtime="torch")
    print(plan.describe())
    runner.predict(samples)

``runtime`` is ``torch`` (:func:`~detseg.inference.optimize.optimize_for_inference` with
``precision``) or ``onnxruntime`` (:func:`~detseg.inference.onnx_runtime.onnxruntime_model`:
the fp32 graph, CPU provider). The option is called ``runtime``, not ``backend``, because
``tools/eval.py --backend`` already chooses the COCO evaluator (pycocotools or
faster_coco_eval).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from detseg.errors import ConfigError
from detseg.inference.onnx_runtime import OnnxRuntimePlan, onnxruntime_model, require_onnxruntime
from detseg.inference.optimize import InferencePlan, check_precision, optimize_for_inference

RUNTIMES = ("torch", "onnxruntime")


def check_runtime(runtime: str, precision: str = "auto", device: torch.device | str = "cpu") -> str:
    """``runtime``, checked with the ``precision`` and ``device`` it is asked to run with.

    Raises:
        ConfigError: an unknown runtime, or onnxruntime with bf16, off the CPU, or not
            installed (the message names ``pip install detseg[export]``).
    """
    check_precision(precision)
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "onnxruntime":
        if precision == "bf16":
            raise ConfigError("precision bf16 is for runtime torch; runtime onnxruntime runs the fp32 graph "
                              "(give precision fp32 or auto)")
        if torch.device(device).type != "cpu":
            raise ConfigError(f"runtime onnxruntime runs on the CPU (CPU provider), not on device '{device}'; "
                              f"use device cpu or runtime torch")
        require_onnxruntime()
    return runtime


def prepare_inference(model: nn.Module, precision: str = "auto", runtime: str = "torch",
                      cache_dir: str | Path | None = None,
                      config: Any = None) -> tuple[nn.Module, InferencePlan | OnnxRuntimePlan]:
    """A copy of ``model`` whose ``predict`` runs as ``runtime`` and ``precision`` say, and its
    plan (``plan.describe()`` is the line to print). ``cache_dir`` and ``config``: where
    onnxruntime keeps its exported graphs and what names them (unused by ``torch``)."""
    first = next(model.parameters(), None)
    check_runtime(runtime, precision, first.device if first is not None else "cpu")
    if runtime == "onnxruntime":
        return onnxruntime_model(model, cache_dir, config)
    return optimize_for_inference(model, precision)
