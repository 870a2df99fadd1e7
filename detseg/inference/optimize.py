"""The inference fast path: one step that picks how a model runs on this machine.

    fast, plan = optimize_for_inference(model, precision="auto")
    print(plan.describe())   # inference: bf16 + channels-last, 53 BatchNorm folded (CPU has avx512_bf16)
    fast.predict(samples)    # same interface as model.predict

``fast`` is a copy of ``model`` in eval mode, for inference only (``model`` and the keys
of its ``state_dict`` are untouched). Three knobs, each kept because it measured faster
(``bench/inference_precision.py``; bench/README.md has the numbers and the command):

- **BatchNorm folded** into the convolution before it (:mod:`detseg.inference.fold_bn`),
  on every path: exact to float rounding (outputs within 1e-4). 0.91-0.98x of fp32 eager.
- **channels-last** weights, hence activations, on the CPU: with folding 0.67-0.92x of
  fp32 eager (tiny Faster R-CNN, U-Net, R50-FPN Faster R-CNN at 800 x 1066).
- **bf16**: every module's ``forward`` (but a one-stage detector's dense head,
  :data:`FP32_PARTS`) runs under ``torch.autocast(dtype=torch.bfloat16)`` (convolutions and
  matrix products in bf16) and hands back fp32; the code between modules (box decoding, NMS,
  the arg-max) stays fp32 (:func:`run_modules_in_bf16`). With folding
  and channels-last 0.37x (R50-FPN), 0.54x (U-Net), 0.80x (tiny Faster R-CNN) of fp32
  eager; on shapes COCO AP -0.0002 (tiny Faster R-CNN), mIoU within 0.0001 (U-Net).

``precision`` is ``fp32``, ``bf16`` or ``auto``. ``auto`` reads the CPU's flags
(:func:`cpu_capabilities`) and takes bf16 where the CPU has bf16 units
(:data:`AUTO_BF16_FLAGS`) and PyTorch has oneDNN, fp32 elsewhere; on a GPU it takes fp32
without channels-last (neither measured there). The figures above are from a 2-core AMD
EPYC with ``avx512_bf16`` and no AMX; no AMX machine was at hand to measure.
"""

from __future__ import annotations

import copy
import dataclasses
import platform
import types
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from detseg.errors import ConfigError
from detseg.inference.fold_bn import fold_batch_norm
from detseg.ops.cpu_features import BF16_UNIT_FLAGS
from detseg.structures import DetSample

PRECISIONS = ("fp32", "bf16", "auto")
BF16_FLAGS = BF16_UNIT_FLAGS  # the flags of bf16 units, as detseg.ops.cpu_features reads them
AUTO_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""The flags with which ``auto`` picks bf16: avx512_bf16 measured (0.37-0.80x of fp32, see
the module docstring); amx_bf16 from issue 17's figure (bf16 + channels-last 0.22x of fp32
on ResNet-50), not measured by detseg."""
TRIAL_SIZE = 128
"""Side of the synthetic image the folding pass runs the model on (when no example is given)."""


@dataclass(frozen=True)
class CpuCapabilities:
    """What :func:`choose_plan` needs to know about the CPU (tests build their own)."""

    model: str
    flags: frozenset[str]
    onednn: bool = True  # torch.backends.mkldnn: bf16 convolutions without it are slow

    def bf16_units(self) -> list[str]:
        return [flag for flag in BF16_FLAGS if flag in self.flags]


def cpu_capabilities(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuCapabilities:
    """The CPU model and flags from ``cpuinfo`` (no flags where there is no such file)."""
    model, flags = platform.processor() or "unknown CPU", frozenset()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = frozenset(value.split())
                    break
    except OSError:
        pass
    return CpuCapabilities(model, flags, torch.backends.mkldnn.is_available())


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@dataclass(frozen=True)
class InferencePlan:
    """How a model runs: ``precision`` (``fp32`` / ``bf16``), ``channels_last``, the
    BatchNorms ``folded`` (and ``kept``), and ``reason``, said in :meth:`describe`."""

    precision: str
    channels_last: bool
    reason: str
    device_type: str = "cpu"
    folded: int = 0
    kept: int = 0
    fold_note: str = ""

    def describe(self) -> str:
        """``inference: bf16 + channels-last, 53 BatchNorm folded (CPU has avx512_bf16)``."""
        path = self.precision + (" + channels-last" if self.channels_last else "")
        folding = f"{self.folded} BatchNorm folded" + (f", {self.kept} kept" if self.kept else "")
        note = f"; {self.fold_note}" if self.fold_note else ""
        return f"inference: {path}, {folding} ({self.reason}{note})"


def choose_plan(precision: str = "auto", device_type: str = "cpu",
                cpu: CpuCapabilities | None = None) -> InferencePlan:
    """The path for ``precision`` on a ``device_type`` device with ``cpu``'s capabilities
    (read from this machine when not given)."""
    check_precision(precision)
    if device_type == "cpu" and cpu is None:
        cpu = cpu_capabilities()
    units = cpu.bf16_units() if cpu is not None and device_type == "cpu" else []
    has = f"CPU has {'/'.join(units)}" if units else f"CPU lacks bf16 matrix units: no {'/'.join(BF16_FLAGS)}"
    on_cpu = device_type == "cpu"  # channels-last in fp32: measured on the CPU only
    if precision == "fp32":
        return InferencePlan("fp32", on_cpu, "fp32 asked for", device_type)
    if precision == "bf16":
        if not on_cpu:
            return InferencePlan("bf16", True, f"bf16 asked for, on {device_type}", device_type)
        slow = "" if units else "; bf16 is emulated there and slower than fp32"
        return InferencePlan("bf16", True, f"bf16 asked for; {has}{slow}", device_type)
    if not on_cpu:
        return InferencePlan("fp32", False, f"auto on {device_type}: bf16 is chosen on CPUs only", device_type)
    if any(flag in units for flag in AUTO_BF16_FLAGS) and cpu.onednn:
        return InferencePlan("bf16", True, has, device_type)
    if units and not cpu.onednn:
        return InferencePlan("fp32", True, f"{has} but this PyTorch has no oneDNN", device_type)
    return InferencePlan("fp32", True, has, device_type)


def trial_samples(device: torch.device, size: int = TRIAL_SIZE) -> list[DetSample]:
    """One synthetic image for the folding pass (noise: seeded, so reruns fold alike)."""
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return [DetSample(image.to(device), image_id=0, orig_size=(size, size))]


def optimize_for_inference(model: nn.Module, precision: str = "auto",
                           example: Sequence[DetSample] | None = None,
                           cpu: CpuCapabilities | None = None) -> tuple[nn.Module, InferencePlan]:
    """A copy of ``model`` for inference on this machine, and the :class:`InferencePlan`
    it follows (``plan.describe()`` is the line to print).

    Args:
        model: a detseg model (``predict(samples)``); left as it is.
        precision: ``fp32``, ``bf16`` or ``auto`` (see the module docstring).
        example: samples for the folding pass (one forward); a synthetic
            ``TRIAL_SIZE``-pixel image when not given. BatchNorms that this pass does not
            reach (a mask head on an image without detections) stay unfolded.
        cpu: the CPU's capabilities; read from ``/proc/cpuinfo`` when not given.

    Raises:
        ConfigError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    plan = choose_plan(precision, device.type, cpu)
    fast = copy.deepcopy(model).eval()
    samples = list(example) if example is not None else trial_samples(device)
    note = ""
    try:
        folding = fold_batch_norm(fast, lambda: fast.predict(samples))
    except Exception as exc:  # noqa: BLE001 - folding is an optimisation: a model it cannot run stays as it is
        fast = copy.deepcopy(model).eval()
        folding = fold_batch_norm(fast, lambda: None)
        note = f"BatchNorm not folded: the trial forward failed ({type(exc).__name__}: {exc})"
    if plan.channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    plan = replace(plan, folded=folding.folded, kept=folding.kept, fold_note=note)
    if plan.precision == "bf16":
        run_modules_in_bf16(fast, plan.device_type)
    return fast, plan


FP32_PARTS = ("preprocessor", "head")
"""Parts of a model that stay fp32 under bf16: the preprocessor, and a one-stage detector's
dense ``head``, whose last convolutions regress box offsets directly. YOLO
(``configs/yolo/shapes.yaml``, 1000 iterations, 200 validation images): AP 0.2468 in fp32,
0.2492 with the head in bf16, 0.2465 with it in fp32; fitted to 8 images, -0.017 AP with the
head in bf16, 0.000 in fp32. SSD: +0.0003 / -0.0006 (200 images). The fp32 head costs
nothing measurable: 0.97x (YOLO) and 1.03x (SSD) of all-bf16 time, spreads straddling 1
(tiny models, 8 x 128 px, 10 rounds in turns, AMD EPYC with avx512_bf16)."""


def run_modules_in_bf16(model: nn.Module, device_type: str = "cpu") -> nn.Module:
    """Make, in place, every submodule of ``model`` (but its :data:`FP32_PARTS`) run its
    ``forward`` under bf16 autocast, and hand its floating-point outputs back in fp32 where
    it was called from outside autocast.

    The code between module calls (box decoding, NMS, mask pasting, resizing logits, the
    arg-max) stays fp32: detseg's heads return raw outputs from ``forward`` and decode in
    ``predict``. Autocasting the whole ``predict`` instead decoded boxes in bf16 (8 bits
    of mantissa: half a pixel at 128 px) and cost the tiny Faster R-CNN 0.017 AP on shapes.
    """
    forward = _BF16_FORWARDS[device_type] if device_type in _BF16_FORWARDS else _bf16_forward_on(device_type)
    skip = {id(m) for name in FP32_PARTS for m in getattr(model, name, nn.Identity()).modules()}
    for module in model.modules():
        if module is not model and id(module) not in skip:
            module.forward = types.MethodType(forward, module)  # a deepcopy rebinds it to the copy
    return model


def _bf16_forward_on(device_type: str):
    def forward(self: nn.Module, *args, **kwargs):
        if torch.is_autocast_enabled(device_type):  # inside another module's region
            return type(self).forward(self, *args, **kwargs)
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = type(self).forward(self, *args, **kwargs)
        return to_float32(out)

    return forward


_BF16_FORWARDS = {"cpu": _bf16_forward_on("cpu"), "cuda": _bf16_forward_on("cuda")}


def to_float32(value):
    """``value`` with every bf16 tensor in it (in dicts, lists, tuples, dataclasses) as fp32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype == torch.bfloat16 else value
    if isinstance(value, dict):
        out = value.copy()  # keeps OrderedDict / defaultdict
        out.update((k, to_float32(v)) for k, v in value.items())
        return out
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(to_float32(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: to_float32(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value
