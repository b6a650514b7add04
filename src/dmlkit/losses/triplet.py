"""Triplet losses computed exactly without a B x B x R tensor.

For anchor a, positive p and negative n the hinge is ``[s_an - s_ap + m]_+``; with
``similarity="neg_sq_euclidean"`` (``s = -d²``) this is FaceNet's ``[d²_ap - d²_an + m]_+``, with
``"neg_euclidean"`` the plain-distance form. On unit vectors the squared-L2 loss with margin ``m``
equals twice the cosine loss with margin ``m / 2``.

How the all-triplet sum is exact in O(B R) memory. Per anchor the negatives' similarities are
sorted once (ascending). The negatives of a positive pair (a, p) that give a non-zero hinge,
``s_an > s_ap - m``, are then a contiguous run ``[lo, hi)`` of the sorted row, found by binary
search, and on that run the hinge is linear:

    Σ_{n ∈ run} [s_an - s_ap + m]_+  =  (C[hi] - C[lo])  -  (hi - lo) (s_ap - m)

with ``C`` the row's prefix sums. The prefix sums are taken over ``s_an - c_a`` (``c_a`` the mean of
anchor a's negatives, a constant) so that float32 cancellation stays at the size of one term. The
gradient is exact and comes from autograd through the gathers and the prefix sums:
``dL/ds_ap = -|run(a, p)|`` and ``dL/ds_an = #{p : n ∈ run(a, p)}``, both divided by the normaliser.

Mining (``mining=``), with the negatives of a positive pair that are *selected*:

- ``all``: every triplet (the loss is the mean over triplets with a non-zero hinge);
- ``semihard``: ``s_ap - m <= s_an < s_ap``, every semi-hard triplet (pytorch-metric-learning's
  ``TripletMarginMiner(type_of_triplets="semihard")``: farther than the positive, inside the margin);
- ``hard``: ``s_an >= s_ap`` (its ``type_of_triplets="hard"``: the negative is at least as close as
  the positive);
- ``semihard_nearest``: ONE negative per positive pair, FaceNet / TensorFlow's
  ``triplet_semihard_loss``: the most similar negative with ``s_an < s_ap``; when no negative is
  farther than the positive, the least similar negative of the anchor.

Reductions (``reduction=``): ``mean_active`` divides the summed hinges by the number of selected
triplets with a non-zero hinge (pytorch-metric-learning's ``AvgNonZeroReducer``, its default);
``mean`` by the number of selected triplets (``all``: every triplet of the batch,
``semihard_nearest``: every positive pair with a negative, as TensorFlow does); ``sum`` returns the
sum. With nothing to divide by, the loss is 0, connected to the graph.

Default margin 0.1 for cosine similarities (the XBM / GPW value); pytorch-metric-learning's
``TripletMarginLoss`` defaults to 0.05 (0.2 from its v3): pass ``margin=`` to match it.

Shapes: ``S (B, R)`` from ``emb (B, D)`` and ``ref_emb (R, D)``. Time O(B R log R + B R D);
memory O(B R) (the sorted row, its order and its prefix sums), never O(B R²).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dmlkit.core.checks import check_positive
from dmlkit.core.relations import RelationFn
from dmlkit.core.similarity import Similarity
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.registry import LOSSES
from dmlkit.losses.triplet_sampling import PositivePairs, positive_pairs

TripletMining = Literal["all", "semihard", "hard", "semihard_nearest"]
TRIPLET_MININGS: tuple[str, ...] = ("all", "semihard", "hard", "semihard_nearest")
TripletReduction = Literal["mean_active", "mean", "sum"]
TRIPLET_REDUCTIONS: tuple[str, ...] = ("mean_active", "mean", "sum")


class _SortedNegatives(NamedTuple):
    """Each row's negatives sorted ascending (non-negatives first, as -inf) and where they start."""

    keys: Tensor  # (B, R) detached, ascending
    order: Tensor  # (B, R) column of each sorted entry
    first: Tensor  # (B,) index of the first negative in ``keys`` (R when there is none)


def _sorted_negatives(sim: Tensor, neg: Tensor) -> _SortedNegatives:
    keys, order = torch.sort(sim.detach().masked_fill(~neg, float("-inf")), dim=1)
    first = sim.shape[1] - neg.sum(dim=1)
    return _SortedNegatives(keys, order, first)


def _search(keys: Tensor, pairs: PositivePairs, queries: Tensor, right: bool) -> Tensor:
    """``searchsorted`` of one query per positive pair in its anchor's sorted row -> ``(P,)``."""
    padded = queries.new_zeros((keys.shape[0], pairs.width))
    padded[pairs.rows, pairs.slots] = queries
    found = torch.searchsorted(keys, padded, right=right)
    return found[pairs.rows, pairs.slots]


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

    def _reduce(self, total: Tensor, active: Tensor, selected: Tensor) -> Tensor:
        """``total`` divided as the reduction says (``active``/``selected`` are counts)."""
        if self.reduction == "sum":
            return total
        count = active if self.reduction == "mean_active" else selected
        return total / count.clamp_min(1).to(total.dtype)


class TripletLoss(_TripletBase):
    """Triplet margin loss over all (or mined) triplets of the batch, exactly, in O(B R) memory.

    ``forward(emb (B, D), labels, ref_emb (R, D) = None, ref_labels = None, self_index = None)``;
    see the module docstring for the mining rules and reductions.
    """

    def __init__(
        self,
        margin: float = 0.1,
        mining: TripletMining = "all",
        similarity: str | Similarity = "cosine",
        reduction: TripletReduction = "mean_active",
        relation_fn: RelationFn | None = None,
    ) -> None:
        super().__init__(margin, similarity, reduction, relation_fn)
        if mining not in TRIPLET_MININGS:
            raise ValueError(f"mining: expected one of {TRIPLET_MININGS}, got {mining!r}")
        self.mining = mining

    def from_similarity(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The loss from ``S (B, R)`` and the label masks ``pos, neg (B, R)``."""
        pos = pos & neg.any(dim=1, keepdim=True)  # anchors without a negative have no triplet
        pairs = positive_pairs(pos)
        if pairs.rows.numel() == 0:
            return 0.0 * sim.sum()
        negs = _sorted_negatives(sim, neg)
        s_ap = sim[pairs.rows, pairs.cols]
        if self.mining == "semihard_nearest":
            return self._nearest_semihard(sim, negs, pairs, s_ap)
        return self._band_sum(sim, neg, negs, pairs, s_ap)

    def _band_sum(
        self, sim: Tensor, neg: Tensor, negs: _SortedNegatives, pairs: PositivePairs, s_ap: Tensor
    ) -> Tensor:
        num_ref = sim.shape[1]
        num_neg = (num_ref - negs.first).to(sim.dtype)
        center = (torch.where(neg, sim.detach(), 0.0).sum(dim=1) / num_neg.clamp_min(1.0))[:, None]
        values = torch.gather((sim - center).masked_fill(~neg, 0.0), 1, negs.order)
        prefix = F.pad(torch.cumsum(values, dim=1), (1, 0))  # (B, R + 1), prefix[:, k] = Σ first k
        lower = s_ap.detach() - self.margin
        # first negative with s_an >= s_ap (bounds the hard and semi-hard selections)
        at_positive = (
            None if self.mining == "all" else _search(negs.keys, pairs, s_ap.detach(), right=False)
        )
        # active run [lo, hi): the selected negatives with a non-zero hinge (s_an > s_ap - m)
        lo = _search(negs.keys, pairs, lower, right=True)
        if at_positive is not None and self.mining == "hard":
            lo = torch.maximum(lo, at_positive)
        hi = torch.full_like(lo, num_ref)
        if at_positive is not None and self.mining == "semihard":
            hi = torch.maximum(at_positive, lo)
        count = hi - lo
        run_sum = prefix[pairs.rows, hi] - prefix[pairs.rows, lo]
        total = (run_sum - count.to(sim.dtype) * (s_ap - self.margin - center[pairs.rows, 0])).sum()
        selected = self._selected(negs, pairs, lower, at_positive)
        return self._reduce(total, count.sum(), selected)

    def _selected(
        self,
        negs: _SortedNegatives,
        pairs: PositivePairs,
        lower: Tensor,
        at_positive: Tensor | None,
    ) -> Tensor:
        """Number of selected triplets (only needed by ``reduction="mean"``)."""
        if self.reduction != "mean":
            return torch.zeros((), dtype=torch.long, device=lower.device)
        num_ref = negs.keys.shape[1]
        if at_positive is None:  # all triplets
            return (num_ref - negs.first[pairs.rows]).sum()
        if self.mining == "hard":
            return (num_ref - at_positive).sum()
        start = _search(negs.keys, pairs, lower, right=False)  # first s_an >= s_ap - m
        return (at_positive - start).clamp_min(0).sum()

    def _nearest_semihard(
        self, sim: Tensor, negs: _SortedNegatives, pairs: PositivePairs, s_ap: Tensor
    ) -> Tensor:
        below = _search(negs.keys, pairs, s_ap.detach(), right=False) - 1  # last s_an < s_ap
        chosen = torch.maximum(below, negs.first[pairs.rows])  # else the least similar negative
        s_an = sim[pairs.rows, negs.order[pairs.rows, chosen]]
        hinge = F.relu(s_an - s_ap + self.margin)
        selected = torch.tensor(hinge.numel(), device=sim.device)
        return self._reduce(hinge.sum(), (hinge > 0).sum(), selected)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}, reduction={self.reduction!r}"


class BatchHardTripletLoss(_TripletBase):
    """Batch-hard triplets (Hermans et al. 2017): per anchor the hardest positive (lowest ``s``)
    and the hardest negative (highest ``s``), loss ``[max_N s - min_P s + m]_+``; anchors need
    both. Reductions as :class:`TripletLoss`: ``mean_active`` over anchors with a non-zero loss
    (pytorch-metric-learning's ``BatchHardMiner`` + ``TripletMarginLoss``), ``mean`` over anchors
    with a triplet, ``sum``. Ties share the gradient equally. Memory O(B R).
    """

    def __init__(
        self,
        margin: float = 0.1,
        similarity: str | Similarity = "cosine",
        reduction: TripletReduction = "mean_active",
        relation_fn: RelationFn | None = None,
    ) -> None:
        super().__init__(margin, similarity, reduction, relation_fn)

    def from_similarity(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The loss from ``S (B, R)`` and the label masks ``pos, neg (B, R)``."""
        valid = pos.any(dim=1) & neg.any(dim=1)
        hardest_pos = sim.masked_fill(~pos, float("inf")).amin(dim=1)
        hardest_neg = sim.masked_fill(~neg, float("-inf")).amax(dim=1)
        gap = torch.where(valid, hardest_neg - hardest_pos, torch.zeros_like(hardest_pos))
        loss = torch.where(valid, F.relu(gap + self.margin), torch.zeros_like(gap))
        return self._reduce(loss.sum(), (loss > 0).sum(), valid.sum())

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"


@LOSSES.register("triplet", family="triplet", source="Schroff et al. 2015, all triplets")
def triplet(margin: float = 0.1, **kwargs: object) -> TripletLoss:
    """All triplets ``[s_an - s_ap + m]_+``, mean over active triplets; margin 0.1 (cosine)."""
    return TripletLoss(margin, "all", **kwargs)  # type: ignore[arg-type]


@LOSSES.register(
    "triplet_semihard", family="triplet", source="Schroff et al. 2015, semi-hard negatives"
)
def triplet_semihard(margin: float = 0.1, **kwargs: object) -> TripletLoss:
    """Every semi-hard triplet ``s_ap - m <= s_an < s_ap`` (pytorch-metric-learning's miner)."""
    return TripletLoss(margin, "semihard", **kwargs)  # type: ignore[arg-type]


@LOSSES.register(
    "triplet_semihard_nearest",
    family="triplet",
    source="Schroff et al. 2015, nearest semi-hard negative",
)
def triplet_semihard_nearest(
    margin: float = 0.1, reduction: TripletReduction = "mean", **kwargs: object
) -> TripletLoss:
    """FaceNet / TensorFlow semi-hard: one negative per positive pair, mean over positive pairs."""
    return TripletLoss(margin, "semihard_nearest", reduction=reduction, **kwargs)  # type: ignore[arg-type]


@LOSSES.register(
    "triplet_hard_negatives", family="triplet", source="Hermans et al. 2017, hard negatives"
)
def triplet_hard_negatives(margin: float = 0.1, **kwargs: object) -> TripletLoss:
    """Triplets whose negative is at least as similar as the positive: ``s_an >= s_ap``."""
    return TripletLoss(margin, "hard", **kwargs)  # type: ignore[arg-type]


@LOSSES.register("triplet_batch_hard", family="triplet", source="Hermans et al. 2017, batch hard")
def triplet_batch_hard(margin: float = 0.1, **kwargs: object) -> BatchHardTripletLoss:
    """Batch-hard triplet loss (one triplet per anchor); also registered as ``triplet_hard``."""
    return BatchHardTripletLoss(margin, **kwargs)  # type: ignore[arg-type]


LOSSES.register("triplet_hard", family="triplet", source="alias of triplet_batch_hard")(
    triplet_batch_hard
)
