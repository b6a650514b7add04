"""Ranked list loss (Wang et al. 2019) on the pair engine: a distance term and a per-anchor
weighted-mean aggregator.

On unit vectors with distance ``d_ij = |x_i - x_j| = sqrt(2 - 2 S_ij)`` (cosine ``S``), the
boundary ``α`` and the margin ``m``::

    l+_ij = [d_ij - (α - m)]_+          l-_ij = [α - d_ij]_+
    L_P,i = Σ_{P_i, l+>0} w+ l+ / Σ w+,   w+ = e^{T_p l+}     (0 when no positive is active)
    L_N,i = Σ_{N_i, l->0} w- l- / Σ w-,   w- = e^{T_n l-}
    L     = mean_i [(1 - λ) L_P,i + λ L_N,i]

The weights are softmaxes of the active pair losses and carry gradient, as in
pytorch-metric-learning's ``RankedListLoss`` (so per anchor the violating negatives are pushed as a
whole, while one far below the weighted mean loss can get a small pull), whose denominators add ``1e-5`` per reference (ours
add nothing, so values differ by a relative ~1e-5 * R / Σ w). Memory O(B R).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.core.checks import check_positive
from dmlkit.core.relations import RelationFn
from dmlkit.losses.aggregators import PairAggregator
from dmlkit.losses.miners import PairMiner
from dmlkit.losses.pair_loss import PairLoss
from dmlkit.losses.reductions import ANCHOR_REDUCTIONS, float_mask, offset_excluded, reduce_anchors
from dmlkit.losses.registry import LOSSES
from dmlkit.losses.terms import PairTerm


class UnitDistanceHingeTerm(PairTerm):
    """``l+ = [d - (α - m)]_+``, ``l- = [α - d]_+`` with ``d = sqrt(max(2 - 2s, 1e-12))``, the
    Euclidean distance of unit vectors from their cosine ``s`` (finite gradient at ``d = 0``)."""

    def __init__(self, alpha: float = 1.2, margin: float = 0.4) -> None:
        super().__init__()
        self.alpha = check_positive(alpha, "alpha")
        self.margin = check_positive(margin, "margin", allow_zero=True)

    def forward(self, sim: Tensor) -> tuple[Tensor, Tensor]:
        dist = (2.0 - 2.0 * sim).clamp_min(1e-12).sqrt()
        return (dist - (self.alpha - self.margin)).relu(), (self.alpha - dist).relu()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, margin={self.margin}"


def _softmax_weighted_mean(loss: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """Row-wise ``Σ_A softmax(T l) l`` over the active entries ``A = mask & (l > 0)`` (rows with
    none: 0). The softmax weights are differentiable."""
    active = mask & (loss > 0)
    weights = torch.softmax(offset_excluded(temperature * loss, active, -1.0), dim=1)
    weights = weights * float_mask(active, loss.dtype)
    return (weights * loss).sum(dim=1)


class WeightedRankedListAggregator(PairAggregator):
    """Per anchor ``(1 - λ) L_P + λ L_N``, each side the softmax-weighted mean (temperatures
    ``temp_pos``, ``temp_neg``; 0 is the plain mean) of its active (non-zero) pair losses;
    ``reduction`` over anchors (default ``mean_all``: every anchor counts, as PML's reducer)."""

    def __init__(
        self,
        temp_pos: float = 0.0,
        temp_neg: float = 10.0,
        imbalance: float = 0.5,
        reduction: str = "mean_all",
    ) -> None:
        super().__init__()
        self.temp_pos = check_positive(temp_pos, "temp_pos", allow_zero=True)
        self.temp_neg = check_positive(temp_neg, "temp_neg", allow_zero=True)
        if not 0.0 <= float(imbalance) <= 1.0:
            raise ValueError(f"imbalance: expected a value in [0, 1], got {imbalance!r}")
        self.imbalance = float(imbalance)
        if reduction not in ANCHOR_REDUCTIONS:
            raise ValueError(f"reduction: expected one of {ANCHOR_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        side_pos = _softmax_weighted_mean(l_pos, pos, self.temp_pos)
        side_neg = _softmax_weighted_mean(l_neg, neg, self.temp_neg)
        per_anchor = (1.0 - self.imbalance) * side_pos + self.imbalance * side_neg
        return reduce_anchors(per_anchor, pos.any(dim=1) | neg.any(dim=1), self.reduction)

    def extra_repr(self) -> str:
        return (
            f"temp_pos={self.temp_pos}, temp_neg={self.temp_neg}, imbalance={self.imbalance}, "
            f"reduction={self.reduction!r}"
        )


@LOSSES.register("ranked_list", family="ranking", source="Wang et al. 2019, ranked list loss")
def ranked_list(
    margin: float = 0.4,
    alpha: float | None = None,
    temp_neg: float = 10.0,
    temp_pos: float = 0.0,
    imbalance: float = 0.5,
    reduction: str = "mean_all",
    miner: PairMiner | None = None,
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Ranked list loss on the distances ``d = sqrt(2 - 2 cos)`` of the normalised embeddings:
    per anchor ``(1 - λ) L_P + λ L_N``, ``L_P`` the ``e^{T_p l}``-weighted mean of the violating
    positive losses ``l = d - (α - m) > 0``, ``L_N`` the ``e^{T_n l}``-weighted mean of the
    violating negative losses ``l = α - d > 0``; mean over anchors. Inputs as every pair loss:
    ``forward(emb (B, D), labels, ref_emb (R, D) = None, ref_labels = None, self_index = None)``.

    Defaults: ``margin = 0.4``, ``alpha = 1 + margin / 2`` (pytorch-metric-learning's default
    boundary, 1.2 as in the paper), ``temp_neg = 10``, ``temp_pos = 0`` (RLL-Simpler: plain mean
    of the violating positives), ``imbalance = 0.5``. PML has no defaults for ``margin`` and
    ``Tn``, and adds 1e-5 per reference to each side's sum of weights. Memory O(B R).
    """
    boundary = 1.0 + margin / 2.0 if alpha is None else alpha
    term = UnitDistanceHingeTerm(boundary, margin)
    aggregator = WeightedRankedListAggregator(temp_pos, temp_neg, imbalance, reduction)
    return PairLoss(term, aggregator, miner, "cosine", relation_fn)
