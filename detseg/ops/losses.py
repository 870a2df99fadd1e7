"""Losses shared by the heads. Each takes raw predictions and targets and a ``reduction``
(``"mean"``, ``"sum"`` or ``"none"``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision.ops as tv_ops
from torch import Tensor

from detseg.constants import IGNORE_INDEX
from detseg.errors import ConfigError


def class_weight_vector(class_weights: Sequence[float] | None, num_classes: int, where: str) -> Tensor | None:
    """Per-class loss weights of a detector head as ``float32[num_classes + 1]``: the given
    weight of each object class, then 1.0 for background (label ``num_classes``).

    A weight multiplies the classification loss term of every prediction assigned to that
    class; the normalisation stays what it is without weights (as in MMDetection's
    ``class_weight``), so weights of 1 change nothing and 0 takes a class out of the loss.
    ``None`` (no weights) stays ``None``.
    """
    if class_weights is None:
        return None
    weights = [float(w) for w in class_weights]
    if len(weights) != num_classes:
        raise ConfigError(f"{where}.class_weights has {len(weights)} values for {num_classes} classes")
    if any(w < 0 for w in weights):
        raise ConfigError(f"{where}.class_weights must be >= 0, got {weights}")
    return torch.tensor([*weights, 1.0], dtype=torch.float32)


def smooth_l1_loss(input: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "sum") -> Tensor:
    """Huber-style loss of Fast R-CNN: ``0.5 x**2 / beta`` for ``|x| < beta``, else
    ``|x| - 0.5 beta``; ``beta = 0`` is plain L1. Defaults to ``sum`` because R-CNN
    heads normalise by the number of sampled predictions themselves."""
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if input.numel() == 0:
        return input.sum() * 0.0
    if beta == 0:
        return F.l1_loss(input, target, reduction=reduction)
    return F.smooth_l1_loss(input, target, beta=beta, reduction=reduction)


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Softmax cross-entropy over dim 1 (``[N, C]`` or ``[N, C, H, W]`` logits).

    Targets equal to ``ignore_index`` contribute nothing; the mean is over the others,
    and is 0 (not NaN) when every target is ignored.
    """
    if target.numel() == 0 or bool((target == ignore_index).all()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index,
                           reduction=reduction)


def class_weighted_cross_entropy(
    logits: Tensor, target: Tensor, class_weights: Tensor | None, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Mean softmax cross-entropy of ``[N, C]`` logits whose term ``i`` is multiplied by
    ``class_weights[target[i]]`` (see :func:`class_weight_vector`); the mean is over the
    targets not ignored, so ``None`` weights give :func:`cross_entropy`."""
    if class_weights is None:
        return cross_entropy(logits, target, ignore_index=ignore_index)
    kept = target != ignore_index
    if not bool(kept.any()):
        return logits.sum() * 0.0
    terms = F.cross_entropy(logits[kept], target[kept], reduction="none")
    return (terms * class_weights.to(terms)[target[kept]]).sum() / kept.sum()


def sigmoid_focal_loss(
    logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "sum"
) -> Tensor:
    """Focal loss of RetinaNet on independent sigmoid outputs; ``target`` in {0, 1}, same shape.

    ``alpha < 0`` disables the class-balance weight."""
    if logits.numel() == 0:
        return logits.sum() * 0.0
    return tv_ops.sigmoid_focal_loss(logits, target.to(logits.dtype), alpha=alpha, gamma=gamma,
                                     reduction=reduction)


def soft_dice_loss(
    logits: Tensor,
    target: Tensor,
    ignore_index: int = IGNORE_INDEX,
    smooth: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Multiclass soft Dice loss, ``1 - Dice`` per class, averaged over classes.

    Args:
        logits: ``[N, C, H, W]``; probabilities are ``softmax`` over ``C``.
        target: ``int64[N, H, W]`` class indices; ``ignore_index`` pixels are left out.
        smooth: added to numerator and denominator, so a class absent from both
            prediction and target scores Dice 1 (loss 0) instead of 0/0.
        reduction: ``"mean"`` over classes, ``"sum"``, or ``"none"`` (``Tensor[C]``).

    Per class c (sums over all pixels of the batch that are not ignored)::

        dice_c = (2 * sum(p_c * y_c) + smooth) / (sum(p_c) + sum(y_c) + smooth)
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)  # [N, 1, H, W]
    probs = logits.softmax(dim=1) * valid
    one_hot = F.one_hot(target.clamp(0, num_classes - 1) * (target != ignore_index),
                        num_classes).permute(0, 3, 1, 2).to(logits.dtype) * valid
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    denominator = probs.sum(dims) + one_hot.sum(dims)
    loss = 1.0 - (2.0 * intersection + smooth) / (denominator + smooth)
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()
