"""Triplet losses computed exactly without a B x B x B tensor.

For anchor a, positive p and negative n the hinge is ``[s_an - s_ap + m]_+`` (with ``s = -d`` or
``s = -d²`` this is the usual distance form). With the negatives of each anchor sorted once, the
triplets of a positive pair (a, p) whose negative lies in a similarity band ``(lo, hi)`` are a
contiguous run of the sorted row, so their count and the sum of their ``s_an`` come from prefix
sums and two binary searches:

    Σ_{n ∈ band} [s_an - s_ap + m]  =  Σ_{n ∈ band} s_an  -  |band| (s_ap - m)

(every negative in the band has ``s_an > s_ap - m``, so the hinge is linear there). Time
O(B R log R), memory O(B R); the gradient is exact (autograd through the sort and the prefix sums):
``dL/ds_ap = -|band(a,p)|`` and ``dL/ds_an = #{p : n ∈ band(a,p)}`` before normalisation.

Mining follows pytorch-metric-learning's TripletMarginMiner (with the loss margin):
``all`` = every triplet with positive loss (band ``(s_ap - m, +inf)``), ``semihard`` = band
``(s_ap - m, s_ap)``, ``hard`` = band ``[s_ap, +inf)``. Reductions: ``mean_active`` (mean over
triplets with loss > 0, PML's AvgNonZeroReducer), ``mean`` (over all triplets of the batch), ``sum``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from dmlkit.core.checks import check_positive
from dmlkit.core.relations import RelationFn
from dmlkit.core.similarity import Similarity
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.registry import LOSSES

TripletMining = Literal["all", "semihard", "hard"]
TRIPLET_MININGS: tuple[str, ...] = ("all", "semihard", "hard")
TRIPLET_REDUCTIONS: tuple[str, ...] = ("mean_active", "mean", "sum")


class _TripletBase(BatchLoss):
    def __init__(
        self,
        margin: float,
        similarity: str | Similarity,
        reduction: str,
        relation_fn: RelationFn | None,
    ) -> None:
        super().__init__(similarity, relation_fn)
        if reduction not in TRIPLET_REDUCTIONS:
            raise ValueError(f"reduction: expected one of {TRIPLET_REDUCTIONS}, got {reduction!r}")
        self.margin = check_positive(margin, "margin", allow_zero=True)
        self.reduction = reduction

    def _reduce(self, total: Tensor, active: Tensor, all_triplets: Tensor) -> Tensor:
        if self.reduction == "sum":
            return total
        count = active if self.reduction == "mean_active" else all_triplets
        return total / count.clamp_min(1).to(total.dtype)


class TripletLoss(_TripletBase):
    """Triplet margin loss over all (or mined) triplets of the batch, exactly, in O(B R) memory.

    ``forward(emb (B, D), labels, ref_emb (R, D) = None, ref_labels = None, self_index = None)``.
    """

    def __init__(
        self,
        margin: float = 0.1,
        mining: str = "all",
        similarity: str | Similarity = "cosine",
        reduction: str = "mean_active",
        relation_fn: RelationFn | None = None,
    ) -> None:
        super().__init__(margin, similarity, reduction, relation_fn)
        if mining not in TRIPLET_MININGS:
            raise ValueError(f"mining: expected one of {TRIPLET_MININGS}, got {mining!r}")
        self.mining = mining

    def from_similarity(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        num_ref = sim.shape[1]
        neg_sorted, order = torch.sort(sim.detach().masked_fill(~neg, float("-inf")), dim=1)
        values = torch.gather(sim, 1, order)  # differentiable copy of the sorted similarities
        values = torch.where(torch.isinf(neg_sorted), torch.zeros_like(values), values)
        csum = F.pad(torch.cumsum(values, dim=1), (1, 0))  # (B, R + 1), csum[:, k] = Σ first k
        s_ap = sim.detach()
        lower = s_ap - self.margin
        if self.mining == "hard":
            lo_idx = torch.searchsorted(neg_sorted, s_ap.contiguous(), right=False)
        else:
            lo_idx = torch.searchsorted(neg_sorted, lower.contiguous(), right=True)
        if self.mining == "semihard":
            hi_idx = torch.searchsorted(neg_sorted, s_ap.contiguous(), right=False)
        else:
            hi_idx = torch.full_like(lo_idx, num_ref)
        hi_idx = torch.maximum(hi_idx, lo_idx)
        count = (hi_idx - lo_idx).to(sim.dtype)
        band_sum = torch.gather(csum, 1, hi_idx) - torch.gather(csum, 1, lo_idx)
        per_pair = band_sum - count * (sim - self.margin)
        keep = pos & (count > 0)
        total = torch.where(keep, per_pair, torch.zeros_like(per_pair)).sum()
        active = torch.where(keep, count, torch.zeros_like(count)).sum()
        all_triplets = (pos.sum(1) * neg.sum(1)).sum()
        return self._reduce(total, active, all_triplets)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}, reduction={self.reduction!r}"


class BatchHardTripletLoss(_TripletBase):
    """Batch-hard triplets (Hermans et al. 2017): per anchor the hardest positive (lowest s) and
    hardest negative (highest s), loss ``[max_N s - min_P s + m]_+``; anchors need both.
    Reductions as :class:`TripletLoss` (``mean`` = over anchors with a triplet).
    """

    def __init__(
        self,
        margin: float = 0.1,
        similarity: str | Similarity = "cosine",
        reduction: str = "mean_active",
        relation_fn: RelationFn | None = None,
    ) -> None:
        super().__init__(margin, similarity, reduction, relation_fn)

    def from_similarity(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        valid = pos.any(1) & neg.any(1)
        hardest_pos = sim.masked_fill(~pos, float("inf")).amin(dim=1)
        hardest_neg = sim.masked_fill(~neg, float("-inf")).amax(dim=1)
        zero = torch.zeros_like(hardest_pos)
        loss = F.relu(torch.where(valid, hardest_neg - hardest_pos + self.margin, zero))
        total = loss.sum() + 0.0 * sim.sum()
        return self._reduce(total, (loss > 0).sum(), valid.sum())

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"


@LOSSES.register("triplet")
def triplet(margin: float = 0.1, **kwargs: object) -> TripletLoss:
    """All triplets ``[s_an - s_ap + m]_+``, mean over active triplets; margin 0.1 (cosine)."""
    return TripletLoss(margin, "all", **kwargs)  # type: ignore[arg-type]


@LOSSES.register("triplet_semihard")
def triplet_semihard(margin: float = 0.1, **kwargs: object) -> TripletLoss:
    """FaceNet semi-hard triplets: ``s_ap - m < s_an < s_ap``."""
    return TripletLoss(margin, "semihard", **kwargs)  # type: ignore[arg-type]


@LOSSES.register("triplet_hard_negatives")
def triplet_hard_negatives(margin: float = 0.1, **kwargs: object) -> TripletLoss:
    """Triplets whose negative is at least as similar as the positive: ``s_an >= s_ap``."""
    return TripletLoss(margin, "hard", **kwargs)  # type: ignore[arg-type]


@LOSSES.register("triplet_batch_hard")
def triplet_batch_hard(margin: float = 0.1, **kwargs: object) -> BatchHardTripletLoss:
    """Batch-hard triplet loss (one triplet per anchor)."""
    return BatchHardTripletLoss(margin, **kwargs)  # type: ignore[arg-type]
