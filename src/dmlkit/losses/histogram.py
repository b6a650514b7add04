"""Histogram loss (Ustinova & Lempitsky 2016): the probability that a random negative pair is more
similar than a random positive pair, estimated from soft histograms of cosine similarities.

With ``R`` bins of width ``Δ = 2 / R`` on ``[-1, 1]`` and nodes ``t_r = -1 + r Δ``
(``r = 0 .. R``), each similarity ``s`` adds ``1 - u`` to node ``r`` and ``u`` to node ``r + 1``,
``r = floor((s + 1) / Δ)``, ``u = (s + 1) / Δ - r`` (linear interpolation; the paper's triangular
kernel). Dividing by the number of pairs gives the densities ``h+`` (positive pairs) and ``h-``
(negative pairs), and

    L = Σ_r h-_r Φ+_r,      Φ+_r = Σ_{q <= r} h+_q      (cumulative positive density).

The gradient flows through the interpolation weights ``u`` (bins are constants), as in the paper.
Shapes: ``emb (B, D)``, ``labels (B,)``; optional ``ref_emb (R, D)``, ``ref_labels (R,)``. Without a
reference each unordered pair of the batch counts once; with one, every (row, reference) pair.
Memory O(B R + R_bins).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.core.relations import RelationFn
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.inputs import LossInputs
from dmlkit.losses.registry import LOSSES


def soft_histogram(values: Tensor, num_bins: int, low: float, width: float) -> Tensor:
    """Density ``(num_bins + 1,)`` of ``values (P,)`` on the nodes ``low + r width`` by linear
    interpolation between the two nearest nodes (a value past an end, as rounding can give, is
    extrapolated from the end bin); differentiable in ``values``. ``P = 0`` gives zeros."""
    pos = (values - low) / width
    bins = pos.detach().floor().clamp_(0, num_bins - 1)
    upper = pos - bins  # weight of the upper node
    out = values.new_zeros(num_bins + 1)
    idx = bins.long()
    out = out.index_add(0, idx + 1, upper).index_add(0, idx, 1.0 - upper)
    return out / max(values.numel(), 1)


class HistogramLoss(BatchLoss):
    """Histogram loss on cosine similarities (module docstring), ``num_bins`` bins on [-1, 1].

    Default ``num_bins=100`` (``Δ = 0.02``), as PML's ``HistogramLoss``. Returns 0 (connected to
    the graph) when there is no positive or no negative pair. PML builds its pairs from the batch's
    triplets, so a negative pair whose two items both lack a positive is left out there; here every
    labelled pair counts (the two agree when each class in the batch has at least two items). PML
    supports no ``ref_emb``; here a reference gives the (row, reference) pairs. A similarity of
    exactly 1 falls in the last bin (PML indexes past its histogram there).
    """

    def __init__(self, num_bins: int = 100, relation_fn: RelationFn | None = None) -> None:
        super().__init__("cosine", relation_fn)
        if int(num_bins) != num_bins or num_bins < 1:
            raise ValueError(f"num_bins: expected an integer >= 1, got {num_bins!r}")
        self.num_bins = int(num_bins)

    def compute(self, x: LossInputs) -> Tensor:
        sim, pos, neg = self.pairs_of(x)
        if x.symmetric:  # each unordered pair of the batch once
            pos, neg = torch.triu(pos, diagonal=1), torch.triu(neg, diagonal=1)
        return self.from_similarity(sim, pos, neg)

    def from_similarity(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The loss from cosine similarities ``S (B, R)`` and the pair masks ``(B, R)`` (each pair
        counted as often as the masks hold it)."""
        if not bool(pos.any()) or not bool(neg.any()):
            return sim.sum() * 0.0
        width = 2.0 / self.num_bins
        h_pos = soft_histogram(sim[pos], self.num_bins, -1.0, width)
        h_neg = soft_histogram(sim[neg], self.num_bins, -1.0, width)
        return (h_neg * h_pos.cumsum(0)).sum()

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}"


@LOSSES.register("histogram", family="distribution", source="Ustinova & Lempitsky 2016")
def histogram(num_bins: int = 100, relation_fn: RelationFn | None = None) -> HistogramLoss:
    """Histogram loss: ``Σ_r h-_r Φ+_r`` over soft histograms of cosine similarities
    (:class:`HistogramLoss`); ``num_bins=100`` as PML's default."""
    return HistogramLoss(num_bins, relation_fn)
