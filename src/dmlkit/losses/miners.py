"""Pair miners: which pairs count (the "mining" half of general pair weighting).

Interface (used by :class:`~dmlkit.losses.pair_loss.PairLoss` and open to any loss that works on a
similarity matrix)::

    pos_kept, neg_kept = miner(S, pos, neg)

``S (B, R)`` is the similarity matrix ("higher = more similar"; it is detached inside), ``pos`` and
``neg`` the bool label masks ``(B, R)`` (self-pairs already removed). The result is two bool
sub-masks ``pos_kept ⊆ pos``, ``neg_kept ⊆ neg``: a miner never creates a pair and never carries
gradient. Rows are anchors and every rule below is per anchor, so with a memory bank or proxies as
the reference (R columns) the same miners apply. Subclasses implement ``mine(S, pos, neg)``, which
runs under ``torch.no_grad``. Memory: O(B R) unless noted.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dmlkit.core.checks import check_positive
from dmlkit.core.distance_weighting import distance_weighted_probs
from dmlkit.losses.reductions import offset_excluded
from dmlkit.losses.registry import MINERS

_INF = float("inf")


class PairMiner(nn.Module):
    """Base class: ``forward(S, pos, neg) -> (pos', neg')``; runs under ``torch.no_grad``.

    ``deterministic`` (True unless the miner draws at random) says that mining the same input
    twice gives the same pairs, which lets a chunked loss recompute its blocks in the backward.
    """

    deterministic: bool = True

    def forward(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return self.mine(sim.detach(), pos, neg)

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError  # pragma: no cover - interface


@MINERS.register("all", family="none", source="every labelled pair")
class AllPairsMiner(PairMiner):
    """Keeps every labelled pair (no mining)."""

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        return pos, neg


@MINERS.register("threshold", family="threshold", source="fixed similarity thresholds")
class ThresholdMiner(PairMiner):
    """Keeps positives with ``s < pos_below`` and negatives with ``s > neg_above`` (None = all)."""

    def __init__(self, pos_below: float | None = None, neg_above: float | None = None) -> None:
        super().__init__()
        self.pos_below = pos_below
        self.neg_above = neg_above

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        if self.pos_below is not None:
            pos = pos & (sim < self.pos_below)
        if self.neg_above is not None:
            neg = neg & (sim > self.neg_above)
        return pos, neg


@MINERS.register("ms", family="relative hardness", source="Wang et al. 2019, multi-similarity")
class MultiSimilarityMiner(PairMiner):
    """ε-mining of Wang et al. 2019 (positive relative similarity), strict inequalities:

    keep negative j of anchor i iff ``S_ij + ε > min_{k∈P_i} S_ik``;
    keep positive j of anchor i iff ``S_ij - ε < max_{k∈N_i} S_ik``.
    An anchor with no positive (or no negative) keeps nothing; with both present, the mined
    positive set is empty iff the mined negative set is.
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        self.epsilon = float(epsilon)

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        # one float buffer serves all four steps; empty rows get ±finfo.max/16 and keep nothing
        buf = offset_excluded(sim, pos, 1.0)
        min_pos = buf.amin(dim=1, keepdim=True)
        max_neg = offset_excluded(sim, neg, -1.0, out=buf).amax(dim=1, keepdim=True)
        keep_pos = pos & (torch.sub(sim, self.epsilon, out=buf) < max_neg)
        keep_neg = neg & (torch.add(sim, self.epsilon, out=buf) > min_pos)
        return keep_pos, keep_neg

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


@MINERS.register("hardest", family="hardness", source="Hermans et al. 2017, batch hard")
class HardestPairMiner(PairMiner):
    """Per anchor, the hardest positive (lowest s) and hardest negative (highest s); ties -> first."""

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        return _top_per_row(-sim, pos, 1), _top_per_row(sim, neg, 1)


@MINERS.register("topk", family="hardness", source="k hardest per anchor")
class TopKPairMiner(PairMiner):
    """Per anchor, the ``k_pos`` hardest positives and ``k_neg`` hardest negatives (all if fewer)."""

    def __init__(self, k_pos: int = 1, k_neg: int = 1) -> None:
        super().__init__()
        if k_pos < 1 or k_neg < 1:
            raise ValueError(f"k_pos, k_neg: expected >= 1, got {k_pos}, {k_neg}")
        self.k_pos, self.k_neg = int(k_pos), int(k_neg)

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        return _top_per_row(-sim, pos, self.k_pos), _top_per_row(sim, neg, self.k_neg)

    def extra_repr(self) -> str:
        return f"k_pos={self.k_pos}, k_neg={self.k_neg}"


def _top_per_row(score: Tensor, mask: Tensor, k: int) -> Tensor:
    """Bool mask of the ``k`` highest-``score`` masked entries per row (ties: lower index wins).

    ``k = 1`` is one ``argmax`` (first maximum); larger ``k`` finds each row's k-th largest value
    by selection (unsorted ``topk``), keeps what lies above it and fills up with the
    lowest-index entries equal to it. Memory O(B R).
    """
    k = min(k, score.shape[1])
    filled = offset_excluded(score, mask, -1.0)
    if k == 1:
        out = torch.zeros_like(mask)
        out.scatter_(1, filled.argmax(dim=1, keepdim=True), True)
        return out & mask
    kth = filled.topk(k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    above = filled > kth
    ties = filled == kth
    room = k - above.sum(dim=1, keepdim=True)
    return (above | (ties & (ties.cumsum(dim=1) <= room))) & mask


@MINERS.register("semihard", family="triplet geometry", source="Schroff et al. 2015, FaceNet")
class SemiHardPairMiner(PairMiner):
    """FaceNet semi-hard negatives, as pairs.

    Negative n is semi-hard for anchor a if some positive p has ``S_ap - margin < S_an < S_ap``
    (it is closer than no positive, but inside the margin band of one). Positives are kept when at
    least one negative is semi-hard for them. Per row: sort the positives, binary-search each
    negative. Time O(B R log R), memory O(B R).
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = check_positive(margin, "margin")

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        pos_sorted = torch.sort(sim.masked_fill(~pos, _INF), dim=1).values  # positives ascending
        # smallest positive similarity strictly greater than s_an
        idx = torch.searchsorted(pos_sorted.contiguous(), sim.contiguous(), right=True)
        ceiling = torch.gather(
            torch.cat([pos_sorted, torch.full_like(pos_sorted[:, :1], _INF)], dim=1), 1, idx
        )
        neg_out = neg & (ceiling < sim + self.margin)
        # positive p is used iff some kept negative lies in (s_p - margin, s_p)
        neg_sorted = torch.sort(sim.masked_fill(~neg_out, -_INF), dim=1).values
        lo = torch.searchsorted(
            neg_sorted.contiguous(), (sim - self.margin).contiguous(), right=True
        )
        hi = torch.searchsorted(neg_sorted.contiguous(), sim.contiguous(), right=False)
        pos_out = pos & (hi > lo)
        return pos_out, neg_out

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


@MINERS.register(
    "distance_weighted", family="sampling", source="Wu et al. 2017", context=("embedding_dim",)
)
class DistanceWeightedPairMiner(PairMiner):
    """Distance-weighted negatives (Wu et al. 2017); all positives are kept.

    Per anchor, ``num_negatives`` negatives are drawn without replacement with probability
    ∝ 1/q(d) (see :mod:`dmlkit.core.distance_weighting`), ``d = sqrt(2 - 2 s)`` for cosine ``s``.
    Draws use the Gumbel-top-k trick with an explicit ``generator``, so the same generator state
    gives the same pairs.
    """

    deterministic = False

    def __init__(
        self,
        embedding_dim: int,
        num_negatives: int = 1,
        lower_cutoff: float = 0.5,
        upper_cutoff: float | None = 1.4,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if num_negatives < 1:
            raise ValueError(f"num_negatives: expected >= 1, got {num_negatives}")
        self.dim = int(embedding_dim)
        self.num_negatives = int(num_negatives)
        self.lower_cutoff = float(lower_cutoff)
        self.upper_cutoff = upper_cutoff
        self.generator = generator

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        dist = (2.0 - 2.0 * sim).clamp_min(0.0).sqrt()
        probs = distance_weighted_probs(dist, neg, self.dim, self.lower_cutoff, self.upper_cutoff)
        device = self.generator.device if self.generator is not None else probs.device
        uniform = torch.rand(
            probs.shape, generator=self.generator, dtype=probs.dtype, device=device
        )
        uniform = uniform.to(probs.device).clamp(min=1e-12, max=1.0 - 1e-12)
        keys = torch.log(probs) - torch.log(-torch.log(uniform))
        keys = keys.masked_fill(probs <= 0, -_INF)
        return pos, _top_per_row(keys, probs > 0, self.num_negatives)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_negatives={self.num_negatives}, "
            f"lower_cutoff={self.lower_cutoff}, upper_cutoff={self.upper_cutoff}"
        )


__all__ = [
    "AllPairsMiner",
    "DistanceWeightedPairMiner",
    "HardestPairMiner",
    "MultiSimilarityMiner",
    "PairMiner",
    "SemiHardPairMiner",
    "ThresholdMiner",
    "TopKPairMiner",
]
