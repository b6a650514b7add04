"""Pair aggregators: how per-pair losses combine (the "weighting" half of general pair weighting).

An aggregator maps ``(l+ (B, R), l- (B, R), pos (B, R), neg (B, R))`` to a 0-dim loss. Its gradient
with respect to each pair loss is that pair's weight. Entries outside the masks are ignored (their
gradient is exactly zero). Every aggregator returns a value connected to the graph, 0 when no pair is
active. Memory: O(B R).

Unique pairs: when the batch is its own reference, ``S_ij`` and ``S_ji`` are one unordered pair seen
from both anchors. Per-anchor aggregators want both copies; an aggregator that counts pairs (a top-k
over pairs, a mean over unique pairs) sets the attribute ``unique_pairs = True`` and
:class:`~dmlkit.losses.pair_loss.PairLoss` then hands it each unordered pair once, at ``(i, j)`` with
``i < j`` (active when either ordered copy is). With any other reference every entry is its own pair.

Row blocks: an aggregator whose loss is assembled from sums over anchors implements ``partial``
(additive statistics of a block of rows) and ``finish`` (the loss from their totals), and sets
``chunk_blocker = None``; :class:`~dmlkit.losses.pair_loss.PairLoss` with ``chunk_size`` then
computes the loss block by block with the same value and gradient. Any other aggregator says in
``chunk_blocker`` why its rows cannot be split.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmlkit.core.checks import check_positive
from dmlkit.losses.reductions import (
    ANCHOR_REDUCTIONS,
    anchor_finish,
    anchor_partial,
    masked_logsumexp,
    masked_mean,
    masked_sum_count,
)

PairNormalization = Literal["pairs", "pairs_nonzero", "sides", "sides_nonzero", "batch", "none"]
PAIR_NORMALIZATIONS: tuple[str, ...] = (
    "pairs",
    "pairs_nonzero",
    "sides",
    "sides_nonzero",
    "batch",
    "none",
)


class PairAggregator(nn.Module):
    """Base class: ``forward(l_pos, l_neg, pos, neg) -> loss`` over ``(B, R)`` pair losses and bool
    masks; ``unique_pairs`` (class or instance attribute) asks for each unordered batch pair once.
    """

    unique_pairs: bool = False
    chunk_blocker: str | None = "its loss is not assembled from sums over anchors"

    def forward(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        return self.finish(self.partial(l_pos, l_neg, pos, neg), l_pos.shape[0])

    def partial(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        """0-dim statistics of a block of rows that add over disjoint blocks."""
        raise NotImplementedError  # pragma: no cover - interface

    def finish(self, stats: tuple[Tensor, ...], rows: int) -> Tensor:
        """The loss from the totals of :meth:`partial` over all ``rows`` anchors."""
        raise NotImplementedError  # pragma: no cover - interface


def _check_reduction(reduction: str) -> str:
    if reduction not in ANCHOR_REDUCTIONS:
        raise ValueError(f"reduction: expected one of {ANCHOR_REDUCTIONS}, got {reduction!r}")
    return reduction


class PairSumAggregator(PairAggregator):
    """``L = (Σ_{P} l+ + Σ_{N} l-) / Z`` with the normaliser ``Z`` chosen by ``normalize``:

    - ``pairs``: number of active pairs (plain mean over pairs);
    - ``pairs_nonzero``: number of pairs with loss > 0;
    - ``sides``: each side averaged separately, ``mean_P l+ + mean_N l-``;
    - ``sides_nonzero``: each side averaged over its non-zero losses (PML contrastive default);
    - ``batch``: the batch size B (official XBM/MS-group code);
    - ``none``: plain sum.
    """

    def __init__(self, normalize: str = "pairs") -> None:
        super().__init__()
        if normalize not in PAIR_NORMALIZATIONS:
            raise ValueError(f"normalize: expected one of {PAIR_NORMALIZATIONS}, got {normalize!r}")
        self.normalize = normalize

    chunk_blocker = None

    def partial(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        nonzero = self.normalize.endswith("nonzero")
        return (*masked_sum_count(l_pos, pos, nonzero), *masked_sum_count(l_neg, neg, nonzero))

    def finish(self, stats: tuple[Tensor, ...], rows: int) -> Tensor:
        total_p, count_p, total_n, count_n = stats
        if self.normalize.startswith("sides"):
            return total_p / count_p.clamp_min(1.0) + total_n / count_n.clamp_min(1.0)
        total = total_p + total_n
        if self.normalize == "none":
            return total
        if self.normalize == "batch":
            return total / rows
        return total / (count_p + count_n).clamp_min(1.0)

    def extra_repr(self) -> str:
        return f"normalize={self.normalize!r}"


class AnchorMeanAggregator(PairAggregator):
    """Per anchor ``mean_{P_i} l+ + mean_{N_i} l-`` (binomial deviance), reduced over anchors.

    An anchor is valid when it has at least one active pair on either side.
    """

    def __init__(self, reduction: str = "mean_valid") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    chunk_blocker = None

    def partial(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        mp, vp = masked_mean(l_pos, pos)
        mn, vn = masked_mean(l_neg, neg)
        return anchor_partial(mp + mn, vp | vn, self.reduction)

    def finish(self, stats: tuple[Tensor, ...], rows: int) -> Tensor:
        return anchor_finish(stats[0], stats[1], rows, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


Combine = Literal["sum", "hinge", "softplus"]


class AnchorLogSumExpAggregator(PairAggregator):
    """Per-anchor soft maxima of each side, then combined:

    ``A+_i = (1/a) log([1 +] Σ_{P_i} e^{a l+})``, ``A-_i = (1/b) log([1 +] Σ_{N_i} e^{b l-})``,
    the ``1 +`` present when ``add_one`` (multi-similarity; an empty side then gives 0), and

    - ``combine="sum"``: ``A+ + A-`` (multi-similarity with ``add_one``);
    - ``combine="hinge"``: ``[A+ + A-]_+`` (generalised lifted structure);
    - ``combine="softplus"``: ``log(1 + e^{A+ + A-})`` (circle loss).

    Without ``add_one`` an anchor needs both sides to be valid; with it, either side suffices.
    The weights (gradients) are the per-side softmax of ``a l+`` (resp. ``b l-``), with the
    implicit zero-loss entry when ``add_one`` - exactly the MS / lifted weights of GPW.
    """

    def __init__(
        self,
        scale_pos: float = 1.0,
        scale_neg: float = 1.0,
        add_one: bool = False,
        combine: str = "sum",
        reduction: str = "mean_all",
    ) -> None:
        super().__init__()
        if combine not in ("sum", "hinge", "softplus"):
            raise ValueError(f"combine: expected 'sum', 'hinge' or 'softplus', got {combine!r}")
        self.scale_pos = check_positive(scale_pos, "scale_pos")
        self.scale_neg = check_positive(scale_neg, "scale_neg")
        self.add_one = bool(add_one)
        self.combine = combine
        self.reduction = _check_reduction(reduction)

    chunk_blocker = None

    def partial(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        a, b = self.scale_pos, self.scale_neg
        lse_p, vp = masked_logsumexp(l_pos, pos, self.add_one, scale=a)
        lse_n, vn = masked_logsumexp(l_neg, neg, self.add_one, scale=b)
        both = lse_p / a + lse_n / b
        valid = (vp | vn) if self.add_one else (vp & vn)
        if self.combine == "hinge":
            both = F.relu(both)
        elif self.combine == "softplus":
            both = F.softplus(both)
        return anchor_partial(both, valid, self.reduction)

    def finish(self, stats: tuple[Tensor, ...], rows: int) -> Tensor:
        return anchor_finish(stats[0], stats[1], rows, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"scale_pos={self.scale_pos}, scale_neg={self.scale_neg}, add_one={self.add_one}, "
            f"combine={self.combine!r}, reduction={self.reduction!r}"
        )


class PerPositiveSoftplusAggregator(PairAggregator):
    """N-pair form: for every active positive pair (i, p), ``log(1 + Σ_{N_i} e^{l+_ip + l-_in})``
    ``= softplus(l+_ip + LSE_{N_i} l-)``, averaged over positive pairs whose anchor has negatives.

    With ``l+ = -s``, ``l- = s`` this is Sohn's N-pair loss ``log(1 + Σ_n e^{s_in - s_ip})``.
    """

    chunk_blocker = None

    def partial(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        lse_n, vn = masked_logsumexp(l_neg, neg)
        keep = pos & vn[:, None]
        per_pair = F.softplus(l_pos + lse_n[:, None])
        return masked_sum_count(per_pair, keep, nonzero=False)

    def finish(self, stats: tuple[Tensor, ...], rows: int) -> Tensor:
        return stats[0] / stats[1].clamp_min(1.0)


class LiftedSongAggregator(PairAggregator):
    """Original lifted structure (Song et al. 2016); needs the square batch matrix (R = B).

    For each positive pair (i, j): ``J_ij = log(Σ_{k∈N_i} e^{l-_ik} + Σ_{k∈N_j} e^{l-_jk}) + l+_ij``
    and ``L = 1/(2|P|) Σ_{(i,j)∈P} [J_ij]_+^2`` over ordered positive pairs (each unordered pair
    twice, which matches Song's 1/(2|P̂|) over unordered pairs). With ``s = -d``,
    ``l+ = d``, ``l- = α - d`` this is the paper's loss.
    """

    chunk_blocker = "each positive pair (i, j) also needs the negatives of row j"

    def forward(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        if l_pos.shape[0] != l_pos.shape[1]:
            raise ValueError(
                "lifted_song: expected the batch as its own reference (square B x B pairs), "
                f"got {tuple(l_pos.shape)}"
            )
        lse_n, vn = masked_logsumexp(l_neg, neg)
        floor = torch.finfo(lse_n.dtype).min / 4
        lse_n = torch.where(vn, lse_n, torch.full_like(lse_n, floor))
        keep = pos & (vn[:, None] | vn[None, :])
        j = torch.logaddexp(lse_n[:, None], lse_n[None, :]) + l_pos
        per_pair = F.relu(j).pow(2)
        total, count = masked_sum_count(per_pair, keep, nonzero=False)
        return total / (2.0 * count.clamp_min(1.0))
