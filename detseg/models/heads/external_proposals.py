"""Proposal sources that do not learn: proposals from a file, or selective search.

Both hand the RoI head at most ``top_n`` boxes per image (in the sample's transformed
image coordinates, file order = best first) and no loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from detseg.errors import DataError
from detseg.models.heads.base import ProposalSource
from detseg.registry import PROPOSAL_SOURCES
from detseg.structures import Boxes, DetSample, Instances


def _first(proposals: Instances, top_n: int, device: torch.device) -> Instances:
    keep = Boxes(proposals.boxes.tensor).nonempty(1e-3)
    return proposals[keep][:top_n].to(device)


@PROPOSAL_SOURCES.register("precomputed")
class PrecomputedProposals(ProposalSource):
    """The proposals the data set attached to each sample (``data.<split>.proposals``).

    Args:
        input_shape: unused (supplied by the model builder).
        top_n: proposals kept per image, ``(training, inference)``.
    """

    in_graph = False

    def __init__(self, input_shape=None, top_n: tuple[int, int] = (2000, 1000)) -> None:
        super().__init__()
        self.top_n = tuple(top_n)

    def _missing(self, sample: DetSample) -> Instances:
        raise DataError(
            f"image id {sample.image_id!r} has no proposals: set data.<split>.proposals to a file made by "
            f"tools/gen_proposals.py, or use proposal_source {{name: selective_search}} to compute them"
        )

    def predict(self, raw: None, samples: Sequence[DetSample], training: bool = False) -> list[Instances]:
        top_n = self.top_n[0 if training else 1]
        return [_first(s.proposals if s.proposals is not None else self._missing(s), top_n, s.image.device)
                for s in samples]


@PROPOSAL_SOURCES.register("selective_search")
class SelectiveSearchProposals(PrecomputedProposals):
    """Selective search on each image (see :class:`~detseg.proposals.selective_search.SelectiveSearch`),
    or the sample's attached proposals when the data set has a proposal file made with
    the same settings (``tools/gen_proposals.py``), which is much faster for training.

    Args:
        top_n: proposals kept per image, ``(training, inference)``.
        colour_spaces, scales, similarities, min_size, sigma, min_box_size: of selective search.
    """

    def __init__(
        self,
        input_shape=None,
        top_n: tuple[int, int] = (2000, 1000),
        colour_spaces: Sequence[str] = ("hsv", "lab"),
        scales: Sequence[float] = (50, 100),
        similarities: Sequence[str] = ("ctsf", "tsf"),
        min_size: int = 20,
        sigma: float = 0.8,
        min_box_size: float = 2.0,
    ) -> None:
        super().__init__(input_shape, top_n)
        from detseg.proposals.selective_search import SelectiveSearch

        self.search = SelectiveSearch(list(colour_spaces), list(scales), list(similarities), min_size, sigma,
                                      min_box_size, max_proposals=max(self.top_n))

    def _missing(self, sample: DetSample) -> Instances:
        boxes = torch.from_numpy(self.search(sample.image.permute(1, 2, 0).contiguous().numpy()))
        return Instances(Boxes(boxes), torch.zeros(len(boxes), dtype=torch.int64), sample.image_size,
                         scores=-torch.arange(len(boxes), dtype=torch.float32))


__all__ = ["PrecomputedProposals", "SelectiveSearchProposals"]
