"""Draw a fixed-size, class-balanced minibatch of positives and negatives."""

from __future__ import annotations

import torch
from torch import Tensor

from detseg.ops.matcher import NEGATIVE, POSITIVE


class BalancedSampler:
    """Samples up to ``batch_size_per_image`` predictions, at most ``positive_fraction``
    of them positive; negatives fill the rest (R-CNN's 25% foreground minibatches).

    Args:
        batch_size_per_image: 256 for the RPN, 512 for the RoI head in Faster R-CNN.
        positive_fraction: 0.5 for the RPN, 0.25 for the RoI head.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        if batch_size_per_image <= 0 or not 0 <= positive_fraction <= 1:
            raise ValueError(
                f"need batch_size_per_image > 0 and 0 <= positive_fraction <= 1, got "
                f"{batch_size_per_image}, {positive_fraction}"
            )
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(
        self, labels: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Pick indices from ``labels`` (``[P]``: 1 positive, 0 negative, -1 ignore).

        Returns:
            ``(positive_index, negative_index)``, each ``int64[K]``, drawn uniformly
            without replacement; ignored predictions are never drawn.
        """
        positive = torch.nonzero(labels == POSITIVE).flatten()
        negative = torch.nonzero(labels == NEGATIVE).flatten()
        num_pos = min(int(self.batch_size_per_image * self.positive_fraction), positive.numel())
        num_neg = min(self.batch_size_per_image - num_pos, negative.numel())
        return _choose(positive, num_pos, generator), _choose(negative, num_neg, generator)


def _choose(index: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    order = torch.randperm(index.numel(), generator=generator, device="cpu")[:k]
    return index[order.to(index.device)]


def hard_negative_mining(background_loss: Tensor, positive: Tensor, neg_pos_ratio: float = 3.0,
                         min_negatives: int = 0, ignored: Tensor | None = None) -> Tensor:
    """SSD's hard negative mining: per image, the negatives with the highest loss,
    ``neg_pos_ratio`` of them per positive (all of them when there are fewer).

    Args:
        background_loss: ``[N, P]`` classification loss of each prediction as background.
        positive: ``bool[N, P]`` predictions matched to an object.
        neg_pos_ratio: negatives kept per positive (3 in the paper).
        min_negatives: kept per image even without positives, so that an image without
            objects still teaches the background class.
        ignored: ``bool[N, P]`` predictions that are never negatives (near crowd regions).

    Returns:
        ``bool[N, P]``, True for the negatives kept.
    """
    excluded = positive if ignored is None else positive | ignored
    loss = background_loss.detach().masked_fill(excluded, float("-inf"))
    num_negatives = (~excluded).sum(1, keepdim=True)
    wanted = (positive.sum(1, keepdim=True) * neg_pos_ratio).long().clamp(min=min_negatives)
    num_keep = torch.minimum(wanted, num_negatives)
    rank = loss.argsort(1, descending=True).argsort(1)  # rank of each prediction's loss in its image
    return (rank < num_keep) & ~excluded
