"""In-batch triplet sampling: every (anchor, positive) pair, or every anchor, gets one sampled
negative.

:class:`DistanceWeightedSampler` (Wu et al. 2017, "Sampling Matters") draws the negative of each
positive pair (a, p) from anchor a's negatives with probability ∝ 1/q(d), the inverse density of
distances between uniform points on the unit sphere (see :mod:`dmlkit.core.distance_weighting`):
distances below ``lower_cutoff`` (0.5) count as 0.5, negatives at ``d >= upper_cutoff`` (1.4, or
``None`` for no cut) are not drawn. With ``per_anchor=True`` every anchor with a positive and a
negative gives one triplet instead, its positive drawn uniformly (the rule of the Revisiting-DML
and DiVA code; the same triplets in distribution when each class has 2 images in the batch).

Samplers work from **distances**: Euclidean distances ``dist (B, R)`` between points of the unit
sphere, never carrying a gradient. :func:`cosine_to_distance` gives them from a cosine similarity
(``d = sqrt(2 - 2 s)``); :func:`sampling_distances` from any similarity of
:mod:`dmlkit.core.similarity`, refusing one it cannot convert (embeddings off the unit sphere,
where the inverse-sphere weights mean nothing) instead of silently sampling far negatives as near
ones.

When the upper cutoff removes every negative of an anchor, its negatives are drawn uniformly, so
its positive pairs still count (Wu et al.'s code falls back to a uniform draw too, over the whole
batch; here it stays within the negatives). Anchors without any negative give no triplet.

Draws use the inverse CDF of each anchor's row with uniforms from an explicit ``torch.Generator``
(on the generator's device, then moved), so the same generator state gives the same triplets on
any device. Shapes: ``dist, pos, neg (B, R)`` -> index tensors ``a, p, n (T,)`` with ``T`` the
number of positive pairs (or anchors) of anchors that have a negative. Memory O(B R); time
O(B R + T log R).

This module lives in ``losses`` (not ``sampling``) because :class:`~dmlkit.losses.margin.MarginLoss`
uses it by default and ``losses`` may not import ``sampling``.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from dmlkit.core.distance_weighting import distance_weighted_probs


class TripletSampler(Protocol):
    """``sampler(dist (B, R), pos (B, R), neg (B, R), dim) -> (a, p, n)`` int64 index tensors;
    ``dist``: Euclidean distances between unit vectors of dimension ``dim``."""

    def __call__(
        self, dist: Tensor, pos: Tensor, neg: Tensor, dim: int
    ) -> tuple[Tensor, Tensor, Tensor]: ...


class PositivePairs(NamedTuple):
    """Positive pairs ``(rows, cols)`` in row-major order, each with its ``slot`` among its row's
    positives, so per-pair values fit a padded ``(B, width)`` layout (``width`` = most positives
    of any row)."""

    rows: Tensor
    cols: Tensor
    slots: Tensor
    width: int


def positive_pairs(pos: Tensor) -> PositivePairs:
    """Enumerate the ``True`` entries of ``pos (B, R)``; memory O(B R) for the scan."""
    rows, cols = torch.nonzero(pos, as_tuple=True)
    counts = pos.sum(dim=1)
    starts = torch.cumsum(counts, dim=0) - counts
    slots = torch.arange(rows.numel(), device=pos.device) - starts[rows]
    width = int(counts.max()) if rows.numel() > 0 else 0
    return PositivePairs(rows, cols, slots, width)


def cosine_to_distance(sim: Tensor) -> Tensor:
    """``d = sqrt(max(2 - 2 s, 1e-12))``: Euclidean distance of unit vectors from their cosine."""
    return (2.0 - 2.0 * sim).clamp_min(1e-12).sqrt()


UNIT_NORM_TOLERANCE = 1e-3


def sampling_distances(emb: Tensor, sim: Tensor, kind: str) -> Tensor:
    """Euclidean distances ``(B, R)`` on the unit sphere for a loss whose similarity ``sim`` of
    ``kind`` was computed from ``emb (B, D)`` against itself (detached).

    ``cosine``: ``sqrt(2 - 2 s)`` whatever the norms (the cosine normalises). ``dot``,
    ``neg_euclidean``, ``neg_sq_euclidean``: only for unit-norm rows (within 1e-3), where they are
    ``sqrt(2 - 2 s)``, ``-s`` and ``sqrt(-s)``; otherwise ``ValueError``: the distance-weighted
    rule is defined on the unit sphere, and converting such a similarity as if it were a cosine
    would favour the farthest negatives instead of the nearest.
    """
    sim = sim.detach()
    if kind == "cosine":
        return cosine_to_distance(sim)
    if kind not in ("dot", "neg_euclidean", "neg_sq_euclidean"):
        raise ValueError(
            f"similarity: expected cosine, dot, neg_euclidean or neg_sq_euclidean, got {kind!r}"
        )
    norms = emb.detach().norm(dim=1)
    if norms.numel() and float((norms - 1.0).abs().max()) > UNIT_NORM_TOLERANCE:
        raise ValueError(
            f"distance-weighted sampling: expected unit-norm embeddings for the loss similarity "
            f"{kind!r} (the weights are those of the unit sphere), got norms in "
            f"[{float(norms.min()):.4g}, {float(norms.max()):.4g}]; normalise the embeddings "
            "(model.normalize: true) or use similarity 'cosine'"
        )
    if kind == "dot":
        return cosine_to_distance(sim)
    if kind == "neg_euclidean":
        return (-sim).clamp_min(0.0)
    return (-sim).clamp_min(1e-12).sqrt()


def distance_weighted_probs_with_fallback(
    dist: Tensor,
    neg: Tensor,
    dim: int,
    lower_cutoff: float = 0.5,
    upper_cutoff: float | None = 1.4,
) -> Tensor:
    """Per-anchor negative probabilities ``(B, R)`` in the dtype of ``dist`` (float32 or float64):
    ∝ 1/q(d) over the negatives under the upper cutoff, uniform over the negatives when the cutoff
    leaves none, 0 without negatives.
    """
    probs = distance_weighted_probs(dist.detach(), neg, dim, lower_cutoff, upper_cutoff)
    uniform = uniform_probs(neg, probs.dtype)
    cut_off_all = (probs.sum(dim=1) == 0) & neg.any(dim=1)
    return torch.where(cut_off_all[:, None], uniform, probs)


def uniform_probs(candidates: Tensor, dtype: torch.dtype) -> Tensor:
    """Rows of ``candidates (B, R)`` bool as uniform probabilities (empty rows stay zero)."""
    counts = candidates.sum(dim=1, keepdim=True).clamp_min(1)
    return candidates.to(dtype) / counts.to(dtype)


def sample_per_positive_pair(
    probs: Tensor, pairs: PositivePairs, generator: torch.Generator | None = None
) -> Tensor:
    """Draw one column per positive pair from its anchor's row of ``probs (B, R)`` -> ``(T,)``.

    Inverse CDF: ``width`` uniforms per anchor (from ``generator``), one binary search each in
    the row's cumulative sum; a drawn column always has a positive probability.
    """
    rows = probs.shape[0]
    cdf = torch.cumsum(probs.to(torch.float64), dim=1)
    device = generator.device if generator is not None else probs.device
    uniform = torch.rand(
        (rows, pairs.width), generator=generator, dtype=torch.float64, device=device
    )
    targets = uniform.to(probs.device) * cdf[:, -1:]
    drawn = torch.searchsorted(cdf, targets, right=True)
    last = (probs > 0).cumsum(dim=1).argmax(dim=1, keepdim=True)  # last column with mass
    return torch.minimum(drawn, last)[pairs.rows, pairs.slots]


def draw_one_per_row(probs: Tensor, rows: Tensor, generator: torch.Generator | None) -> Tensor:
    """One column for each of ``rows (T,)``, drawn from its row of ``probs (B, R)`` -> ``(T,)``.

    The inverse-CDF draw of :func:`sample_per_positive_pair` with one slot per row (one uniform per
    row of ``probs`` is consumed, whichever rows are asked).
    """
    slots = torch.zeros_like(rows)
    return sample_per_positive_pair(probs, PositivePairs(rows, slots, slots, 1), generator)


class DistanceWeightedSampler:
    """Wu et al.'s distance-weighted negatives: one per positive pair, or with ``per_anchor`` one
    triplet per anchor with a uniform positive (see the module docstring).

    ``DistanceWeightedSampler(lower_cutoff=0.5, upper_cutoff=1.4, generator=None,
    per_anchor=False)(dist, pos, neg, dim) -> (a, p, n)``; ``dim`` is the embedding dimension D of
    the analytic weights.
    """

    def __init__(
        self,
        lower_cutoff: float = 0.5,
        upper_cutoff: float | None = 1.4,
        generator: torch.Generator | None = None,
        per_anchor: bool = False,
    ) -> None:
        if not 0.0 < lower_cutoff < 2.0:
            raise ValueError(f"lower_cutoff: expected a distance in (0, 2), got {lower_cutoff}")
        if upper_cutoff is not None and not lower_cutoff < upper_cutoff <= 2.0:
            raise ValueError(
                f"upper_cutoff: expected None or a distance in ({lower_cutoff}, 2], "
                f"got {upper_cutoff}"
            )
        if not isinstance(per_anchor, bool):
            raise TypeError(f"per_anchor: expected a bool, got {per_anchor!r}")
        self.lower_cutoff = float(lower_cutoff)
        self.upper_cutoff = None if upper_cutoff is None else float(upper_cutoff)
        self.generator = generator
        self.per_anchor = per_anchor

    def __call__(
        self, dist: Tensor, pos: Tensor, neg: Tensor, dim: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            probs = distance_weighted_probs_with_fallback(
                dist, neg, dim, self.lower_cutoff, self.upper_cutoff
            )
            usable = pos & neg.any(dim=1, keepdim=True)
            if self.per_anchor:
                anchors = torch.nonzero(usable.any(dim=1)).squeeze(1)
                if anchors.numel() == 0:
                    return anchors, anchors.clone(), anchors.clone()
                p = draw_one_per_row(uniform_probs(usable, probs.dtype), anchors, self.generator)
                return anchors, p, draw_one_per_row(probs, anchors, self.generator)
            pairs = positive_pairs(usable)
            if pairs.rows.numel() == 0:
                return pairs.rows, pairs.cols, pairs.cols.clone()
            return pairs.rows, pairs.cols, sample_per_positive_pair(probs, pairs, self.generator)

    def __repr__(self) -> str:
        return (
            f"DistanceWeightedSampler(lower_cutoff={self.lower_cutoff}, "
            f"upper_cutoff={self.upper_cutoff}, per_anchor={self.per_anchor})"
        )
