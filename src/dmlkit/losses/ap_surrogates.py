"""Average-precision surrogates: FastAP, Smooth-AP and PNP on one front end.

For an anchor ``i`` with positives ``P_i`` and negatives ``N_i`` among the references (after the
optional miner), average precision is the mean over positives ``j`` of the precision at ``j``'s
rank::

    AP_i = 1/|P_i| Σ_{j∈P_i} (1 + R+_ij) / (1 + R+_ij + R-_ij)

with ``R+_ij`` (``R-_ij``) the number of positives (negatives) ranked ahead of ``j``. The rank is a
step function of similarity differences; each surrogate replaces the step by something smooth:

=========  ==========================================================  ======================
loss       surrogate                                                   source / defaults
=========  ==========================================================  ======================
smooth_ap  step -> sigmoid((S_ik - S_ij)/τ); loss 1 - AP_i              Brown 2020, τ=0.01
pnp        only negatives ahead count: R-_ij with the sigmoid step,    Li 2022, τ=0.01,
           mapped by a variant (O, Ds, Dq, Iu, Ib)                      variant O
fast_ap    ranks from soft histograms of d² = 2 - 2 cos over bins;    Cakir 2019, 10 bins
           AP_i = 1/|P_i| Σ_b h+_b H+_b / H_b
=========  ==========================================================  ======================

Shared code: :class:`APSurrogateLoss` validates the inputs, builds ``S (B, R)`` and the label masks
(labels, multi-hot or ``relation_fn``; ``ref_emb``; ``self_index``), applies the miner, averages the
per-anchor losses over anchors with at least one kept positive, and returns 0 connected to the graph
when there is none. :func:`soft_ranks_ahead` is the one ranking of positives among all references
that Smooth-AP and PNP use; FastAP counts by histogram instead, which is its point (O(B R) instead of
O(|P| R)).

Self: like every dmlkit loss, the anchor is not its own positive. pytorch-metric-learning's
``SmoothAPLoss`` and ``PNPLoss`` (after the official code) count the anchor as a positive of itself;
pass ``self_index=torch.full((B,), -1)`` to do the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from dmlkit.core.checks import check_positive
from dmlkit.core.relations import RelationFn
from dmlkit.core.similarity import Similarity
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.miners import AllPairsMiner, PairMiner
from dmlkit.losses.reductions import float_mask, reduce_anchors
from dmlkit.losses.registry import LOSSES

Step = Callable[[Tensor], Tensor]


def sigmoid_step(temperature: float) -> Step:
    """The smooth step ``x -> sigmoid(x / τ)`` of Smooth-AP and PNP."""
    tau = check_positive(temperature, "temperature")
    return lambda diff: torch.sigmoid(diff / tau)


def soft_ranks_ahead(
    sim: Tensor, pos: Tensor, neg: Tensor, step: Step
) -> tuple[Tensor, Tensor, Tensor]:
    """Soft counts of the references ranked ahead of each positive pair.

    For every pair ``(i, j)`` with ``pos[i, j]`` (in row-major order)::

        R+_ij = Σ_{k∈P_i, k≠j} step(S_ik - S_ij),    R-_ij = Σ_{k∈N_i} step(S_ik - S_ij)

    Returns ``(rows (n,), R+ (n,), R- (n,))``, ``n`` the number of positive pairs, ``rows`` their
    anchors. Memory: O(n R) (two ``(n, R)`` matrices), never ``B x R x R``.
    """
    rows, cols = torch.nonzero(pos, as_tuple=True)
    step_ahead = step(sim[rows] - sim[rows, cols][:, None])
    pos_rows = float_mask(pos[rows], sim.dtype)
    pos_rows[torch.arange(rows.numel(), device=sim.device), cols] = 0.0
    ahead_pos = (step_ahead * pos_rows).sum(dim=1)
    ahead_neg = (step_ahead * float_mask(neg[rows], sim.dtype)).sum(dim=1)
    return rows, ahead_pos, ahead_neg


def anchor_mean(values: Tensor, rows: Tensor, num_anchors: int) -> tuple[Tensor, Tensor]:
    """Mean of ``values (n,)`` per anchor ``rows (n,)``: ``(means (B,), has_any (B,))``."""
    total = values.new_zeros(num_anchors).index_add(0, rows, values)
    count = torch.bincount(rows, minlength=num_anchors).to(values.dtype)
    return total / count.clamp_min(1.0), count > 0


class APSurrogateLoss(BatchLoss):
    """Front end of the AP surrogates: subclasses implement :meth:`anchor_losses`.

    ``forward(emb (B, D), labels (B,) | (B, C), ref_emb (R, D) = None, ref_labels = None,
    self_index (B,) = None) -> 0-dim loss``: the mean of the per-anchor losses over anchors with at
    least one positive kept by the miner; 0 (zero gradients) when there is none.
    """

    def __init__(
        self,
        similarity: str | Similarity,
        relation_fn: RelationFn | None,
        miner: PairMiner | None,
    ) -> None:
        super().__init__(similarity, relation_fn)
        if miner is not None and not isinstance(miner, PairMiner):
            raise TypeError(f"miner: expected a PairMiner or None, got {type(miner).__name__}")
        self.miner = miner if miner is not None else AllPairsMiner()

    def anchor_losses(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        """``(losses (B,), valid (B,))`` from ``S`` and the mined masks."""
        raise NotImplementedError  # pragma: no cover - interface

    def from_similarity(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        pos, neg = self.miner(sim, pos, neg)
        losses, valid = self.anchor_losses(sim, pos, neg)
        loss = reduce_anchors(losses, valid, "mean_valid")
        if sim.requires_grad and not loss.requires_grad:
            loss = loss + 0.0 * sim.sum()
        return loss


class SmoothAPLoss(APSurrogateLoss):
    """Smooth-AP (Brown et al. 2020): ``1 - AP_i`` with the rank step replaced by a sigmoid.

    ``AP_i = 1/|P_i| Σ_{j∈P_i} (1 + R+_ij) / (1 + R+_ij + R-_ij)``, the soft ranks of
    :func:`soft_ranks_ahead` with ``step(x) = sigmoid(x / τ)``; only kept references are ranked.
    Any class counts, ``ref_emb`` and miners work. pytorch-metric-learning's ``SmoothAPLoss``
    needs equal class counts in contiguous blocks and no references, weights anchors by miner
    counts, counts the anchor as its own positive (``self_index = -1`` here does the same), and
    groups the blocks correctly only when there are as many classes as items per class (with 4
    classes of 3 it ranks within 3 groups of 4). Defaults:
    ``temperature = 0.01`` (paper and PML), cosine similarity. Memory O(|P| R).

    ``forward(emb (B, D), labels (B,) | (B, C), ref_emb (R, D) = None, ref_labels = None,
    self_index (B,) = None) -> 0-dim loss``, averaged over anchors with a kept positive.
    """

    def __init__(
        self,
        temperature: float = 0.01,
        miner: PairMiner | None = None,
        similarity: str | Similarity = "cosine",
        relation_fn: RelationFn | None = None,
    ) -> None:
        super().__init__(similarity, relation_fn, miner)
        self.temperature = check_positive(temperature, "temperature")
        self.step = sigmoid_step(self.temperature)

    def anchor_losses(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        rows, ahead_pos, ahead_neg = soft_ranks_ahead(sim, pos, neg, self.step)
        precision = (1.0 + ahead_pos) / (1.0 + ahead_pos + ahead_neg)
        ap, valid = anchor_mean(precision, rows, sim.shape[0])
        return 1.0 - ap, valid

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


PNPVariant = Literal["O", "Ds", "Dq", "Iu", "Ib"]
PNP_VARIANTS: tuple[str, ...] = ("O", "Ds", "Dq", "Iu", "Ib")


class PNPLoss(APSurrogateLoss):
    """PNP (Li et al. 2022): penalise only the negatives ranked ahead of each positive.

    With ``R = R-_ij`` (sigmoid step, temperature ``τ``), per positive pair ``f(R)`` and per anchor
    the mean over its positives, where ``f`` is the variant:

    - ``O``: ``R``;  ``Ds`` (decreasing derivative): ``log(1 + R)``;
    - ``Dq``: ``1 - (1 + R)^(-α)`` (the anchor loss ``1 - mean_j (1 + R)^(-α)``);
    - ``Iu`` (increasing): ``(1 + R) log(1 + R)``;  ``Ib``: ``(b R - log(1 + b R)) / b²``.

    Defaults as pytorch-metric-learning's ``PNPLoss``: ``variant="O"``, ``temperature=0.01``
    (PML's ``anneal``), ``alpha=1``, ``b=2``. Unlike PML, ``ref_emb`` works and the anchor is not
    its own positive (see the module docstring). Memory O(|P| R).

    ``forward(emb (B, D), labels (B,) | (B, C), ref_emb (R, D) = None, ref_labels = None,
    self_index (B,) = None) -> 0-dim loss``, averaged over anchors with a kept positive.
    """

    def __init__(
        self,
        variant: str = "O",
        temperature: float = 0.01,
        alpha: float = 1.0,
        b: float = 2.0,
        miner: PairMiner | None = None,
        similarity: str | Similarity = "cosine",
        relation_fn: RelationFn | None = None,
    ) -> None:
        super().__init__(similarity, relation_fn, miner)
        if variant not in PNP_VARIANTS:
            raise ValueError(f"variant: expected one of {PNP_VARIANTS}, got {variant!r}")
        self.variant = variant
        self.temperature = check_positive(temperature, "temperature")
        self.alpha = check_positive(alpha, "alpha")
        self.b = check_positive(b, "b")
        self.step = sigmoid_step(self.temperature)

    def penalty(self, ahead_neg: Tensor) -> Tensor:
        """The variant's ``f(R)`` for soft counts ``R >= 0``."""
        if self.variant == "Ds":
            return torch.log1p(ahead_neg)
        if self.variant == "Dq":
            return 1.0 - (1.0 + ahead_neg).pow(-self.alpha)
        if self.variant == "Iu":
            return (1.0 + ahead_neg) * torch.log1p(ahead_neg)
        if self.variant == "Ib":
            scaled = self.b * ahead_neg
            return (scaled - torch.log1p(scaled)) / self.b**2
        return ahead_neg

    def anchor_losses(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        rows, _, ahead_neg = soft_ranks_ahead(sim, pos, neg, self.step)
        return anchor_mean(self.penalty(ahead_neg), rows, sim.shape[0])

    def extra_repr(self) -> str:
        return (
            f"variant={self.variant!r}, temperature={self.temperature}, alpha={self.alpha}, "
            f"b={self.b}"
        )


def _two_bin_histogram(index: Tensor, upper_share: Tensor, weight: Tensor, bins: int) -> Tensor:
    """Row-wise soft histogram ``(B, bins + 1)``: entry ``(i, j)`` adds ``weight (1 - share)`` to
    bin ``index`` and ``weight share`` to bin ``index + 1`` (the triangular kernels)."""
    hist = weight.new_zeros(weight.shape[0], bins + 1)
    hist = hist.scatter_add(1, index, weight * (1.0 - upper_share))
    return hist.scatter_add(1, index + 1, weight * upper_share)


class FastAPLoss(APSurrogateLoss):
    """FastAP (Cakir et al. 2019): AP from soft histograms of squared distances.

    Distances ``d²_ij = 2 - 2 S_ij`` of unit vectors (cosine ``S``) lie in ``[0, 4]``; bin centres
    ``c_b = 4 b / L`` (``b = 0..L``, ``L = num_bins``) with triangular kernels
    ``K_b(d²) = [1 - |d² - c_b| / Δ]_+``, ``Δ = 4 / L``. Per anchor::

        h+_b = Σ_{P_i} K_b,   h_b = Σ_{P_i ∪ N_i} K_b,   H+_b, H_b their cumulative sums over b
        FastAP_i = 1/|P_i| Σ_b h+_b H+_b / H_b   (terms with H_b = 0 are 0),  loss_i = 1 - FastAP_i

    Default ``num_bins = 10`` (pytorch-metric-learning's ``FastAPLoss``, squared Euclidean on
    normalised embeddings, equals this); unlike PML, ``ref_emb`` works and a miner selects the
    pairs instead of weighting anchors. Each pair feeds its two nearest bins only: time and memory
    O(B R + B L), not the O(L B R) of a dense kernel matrix.

    ``forward(emb (B, D), labels (B,) | (B, C), ref_emb (R, D) = None, ref_labels = None,
    self_index (B,) = None) -> 0-dim loss``, averaged over anchors with a kept positive.
    """

    def __init__(
        self,
        num_bins: int = 10,
        miner: PairMiner | None = None,
        relation_fn: RelationFn | None = None,
    ) -> None:
        super().__init__("cosine", relation_fn, miner)
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins: expected an int >= 1, got {num_bins!r}")
        self.num_bins = num_bins

    def anchor_losses(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        bins = self.num_bins
        # d² in bin units; each pair feeds only the two kernels around it: K_k = 1 - (t - k) and
        # K_{k+1} = t - k for k <= t <= k + 1, the others are 0
        t = ((2.0 - 2.0 * sim) * (bins / 4.0)).clamp(0.0, float(bins))
        low = t.detach().floor().clamp_max(bins - 1)
        upper_share = t - low
        index = low.long()
        pos_f = float_mask(pos, sim.dtype)
        hist_pos = _two_bin_histogram(index, upper_share, pos_f, bins)
        hist_all = hist_pos + _two_bin_histogram(
            index, upper_share, float_mask(neg, sim.dtype), bins
        )
        cum_pos, cum_all = hist_pos.cumsum(dim=1), hist_all.cumsum(dim=1)
        filled = cum_all > 0
        ratio = torch.where(filled, cum_pos / torch.where(filled, cum_all, 1.0), 0.0)
        count = pos_f.sum(dim=1)
        fast_ap = (hist_pos * ratio).sum(dim=1) / count.clamp_min(1.0)
        return 1.0 - fast_ap, count > 0

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}"


FAMILY = "average precision"
LOSSES.register("smooth_ap", family=FAMILY, source="Brown et al. 2020, Smooth-AP")(SmoothAPLoss)
LOSSES.register(
    "pnp", family=FAMILY, source="Li et al. 2022, PNP (only negatives before positives)"
)(PNPLoss)
LOSSES.register("fast_ap", family=FAMILY, source="Cakir et al. 2019, FastAP")(FastAPLoss)
