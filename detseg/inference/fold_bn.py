"""Fold inference-mode BatchNorm into the convolution that feeds it.

In eval mode a BatchNorm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps)
* w + b``, so a convolution followed by it is one convolution with its weight scaled and
its bias shifted (``torch.nn.utils.fusion.fuse_conv_bn_weights`` does the arithmetic). The
BatchNorm becomes ``nn.Identity``.

Which BatchNorm follows which convolution is read from one forward pass, not from the
module tree (a ``Bottleneck`` calls ``conv1`` then ``bn1`` in code, not in a ``Sequential``):
forward hooks record the tensor each ``nn.Conv2d`` returns and the tensor each BatchNorm
receives, and a ``TorchFunctionMode`` counts every torch operation that reads a
convolution's output to make a tensor. A pair is folded only when, on every call, the
convolution's output went to that BatchNorm and nowhere else; anything else (an in-place
ReLU in between, a skip connection taking the raw convolution output, a pre-activation
BatchNorm that follows a ReLU) keeps its BatchNorm. Only plain ``nn.Conv2d`` (a subclass may
rewrite its weight in ``forward``) and the three BatchNorms whose ``forward`` is exactly the
affine map are folded: ``nn.BatchNorm2d`` with running statistics, detseg's and torchvision's
``FrozenBatchNorm2d``.
"""

from __future__ import annotations

import copy
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves
from torchvision.ops.misc import FrozenBatchNorm2d as TorchvisionFrozenBN

from detseg.models.backbones.base import FrozenBatchNorm2d

FOLDABLE_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d, TorchvisionFrozenBN)


@dataclass
class FoldResult:
    """What :func:`fold_batch_norm` did: ``folded`` BatchNorms became part of a convolution;
    ``kept`` were left (no convolution feeds them alone, or the pass never called them)."""

    folded: int
    kept: int


def is_foldable_norm(module: nn.Module) -> bool:
    if type(module) not in FOLDABLE_NORMS:  # subclasses (e.g. BatchNorm + activation) may add work
        return False
    return getattr(module, "running_mean", None) is not None and getattr(module, "running_var", None) is not None


_METADATA = (bool, int, str, torch.dtype, torch.device, torch.layout, torch.memory_format)


def reads_values(result: object) -> bool:
    """Whether an operation that returned ``result`` read its input's values: ``x.shape``,
    ``x.dim()`` or ``x.stride()`` did not; a view, an add, ``x.item()`` or ``x[i] = v`` did."""
    if isinstance(result, _METADATA):
        return False
    return not (isinstance(result, tuple) and all(isinstance(v, int) for v in result))  # Size, strides


@dataclass(eq=False)
class _ConvOutput:
    """One call of a convolution: the torch operations that read its output
    (:func:`reads_values`) and the BatchNorms that received it."""

    conv: nn.Module
    reads: int = 0
    norms: list[nn.Module] = field(default_factory=list)


class _Tracer(TorchFunctionMode):
    """Follows the output of every convolution call while it is alive (weak references:
    the pass keeps no activation alive, and an id is forgotten before it can be reused)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[_ConvOutput] = []
        self.norm_calls: dict[nn.Module, list[_ConvOutput | None]] = defaultdict(list)
        self._alive: dict[int, tuple[weakref.ref, _ConvOutput]] = {}

    def find(self, tensor: Tensor) -> _ConvOutput | None:
        ref, call = self._alive.get(id(tensor), (None, None))
        return call if ref is not None and ref() is tensor else None

    def after_conv(self, module: nn.Module, inputs, output: Tensor) -> None:
        key, call = id(output), _ConvOutput(module)
        self.calls.append(call)
        self._alive[key] = (weakref.ref(output, lambda _, key=key: self._alive.pop(key, None)), call)

    def before_norm(self, module: nn.Module, inputs) -> None:
        call = self.find(inputs[0])
        if call is not None:
            call.norms.append(module)
        self.norm_calls[module].append(call)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self._alive and reads_values(out):
            for leaf in tree_leaves((args, kwargs)):
                call = self.find(leaf) if isinstance(leaf, Tensor) else None
                if call is not None:
                    call.reads += 1
        return out


def conv_bn_pairs(model: nn.Module, run: Callable[[], object]) -> list[tuple[nn.Conv2d, nn.Module]]:
    """``(convolution, BatchNorm)`` pairs of ``model`` that can be folded, read from one
    call of ``run()`` (which must run ``model`` forward): on every call of the convolution
    its output went to that BatchNorm and was read by nothing else, and every call of the
    BatchNorm took an output of that convolution."""
    tracer = _Tracer()
    hooks = [m.register_forward_hook(tracer.after_conv) for m in model.modules() if type(m) is nn.Conv2d]
    hooks += [m.register_forward_pre_hook(tracer.before_norm) for m in model.modules() if is_foldable_norm(m)]
    try:
        with torch.no_grad(), tracer:
            run()
    finally:
        for hook in hooks:
            hook.remove()
    by_conv: dict[nn.Module, list[_ConvOutput]] = defaultdict(list)
    for call in tracer.calls:
        by_conv[call.conv].append(call)
    pairs = []
    for conv, calls in by_conv.items():
        norm = calls[0].norms[0] if calls[0].norms else None
        if norm is None or any(c.norms != [norm] or c.reads != 1 for c in calls):
            continue
        if all(c is not None and c.conv is conv for c in tracer.norm_calls[norm]):
            pairs.append((conv, norm))
    return pairs


def fold_batch_norm(model: nn.Module, run: Callable[[], object]) -> FoldResult:
    """Fold, in place, every BatchNorm of ``model`` (in eval mode) that only a convolution
    feeds, as seen in one call of ``run()``; see the module docstring. Changes the module
    tree (and so ``state_dict`` keys): call it on a copy kept for inference."""
    if any(m.training for m in model.modules()):
        raise ValueError("fold_batch_norm needs a model in eval mode (BatchNorm with running statistics)")
    pairs = conv_bn_pairs(model, run)
    replacements: dict[nn.Module, nn.Module] = {}
    with torch.no_grad():
        for conv, norm in pairs:
            fused = copy.deepcopy(conv)
            fused.weight, fused.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias)
            replacements[conv], replacements[norm] = fused, nn.Identity()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if child in replacements:
                setattr(parent, name, replacements[child])
    kept = sum(1 for m in model.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, *FOLDABLE_NORMS)))
    return FoldResult(folded=len(pairs), kept=kept)
