"""In-batch samplers of shared (inter-class) triplets (Milbich, Roth et al., "Sharing Matters for
Generalization in Deep Metric Learning", TPAMI 2020, and its DiVA extension).

A shared triplet pulls together images of *different* classes, so that what the embedding learns
is what classes have in common. Every sampler here is a
:class:`~dmlkit.losses.triplet_sampling.TripletSampler`: ``sampler(dist (B, B), pos (B, B),
neg (B, B), dim) -> (a, p, n)`` int64 index tensors, on the batch against itself (``pos``/``neg``
from the ground-truth labels with self excluded, as every dmlkit loss builds them). ``dist`` are
Euclidean distances between unit vectors (detached;
:func:`~dmlkit.losses.triplet_sampling.sampling_distances` gives them for any loss similarity, or
refuses one it cannot convert); "distance weighted" means a draw with probability
∝ 1/q(max(d, lower_cutoff)), the inverse density of distances between uniform points on
S^{dim-1} (:mod:`dmlkit.core.distance_weighting`; finite at any ``dim >= 2``), with no upper cutoff
by default (the authors' setting).

- ``shared_random`` (:class:`SharedRandomSampler`, the DiVA default): the labels are permuted,
  ``ỹ = y[π]``, and ordinary distance-weighted triplets are drawn on ``ỹ``: every positive pair
  ``ỹ_p = ỹ_a`` (a random image, same ground-truth class with probability ≈ (m-1)/(B-1)) gets one
  negative ``ỹ_n ≠ ỹ_a`` drawn by distance. Anchors whose permuted group is a single image have no
  positive and give no triplet (all-unique labels give none).
- ``shared_neg`` (:class:`SharedNegSampler`): per anchor, the negative is drawn by distance among
  the other classes, ``y_n ≠ y_a``; the positive uniformly among images whose class differs from
  both, ``y_p ≠ y_a, y_p ≠ y_n``.
- ``shared_full`` (``SharedNegSampler(full=True)``): the same with the positive drawn by distance.
  Both need three classes in the batch: a batch in which no anchor finds a positive (fewer than 3
  classes) raises ``ValueError``; with multi-hot relations an anchor without one is skipped.
- ``surrogate`` (:class:`SurrogateSampler`, the paper-era code): the batch comes from a *shuffled*
  loader (:class:`~dmlkit.sampling.shuffled.ShuffledBatchSampler`), and consecutive blocks of
  ``m`` rows share a random surrogate id, so a block is a group of random images. Every pair of a
  block is a positive pair; its negative is drawn by distance among rows of other blocks that are
  *not of the anchor's class*. Surrogate ids are distinct inside a batch (the blocks are the
  groups); the original drew them with replacement from 200 ids, which merged about 1.5 pairs of
  blocks per batch of 112.

``shared_random`` and ``surrogate`` give one triplet per positive pair by default (the ordinary
distance-weighted rule of :class:`~dmlkit.losses.triplet_sampling.DistanceWeightedSampler`);
``per_anchor=True`` gives one per anchor with a uniform positive, as the paper-era and DiVA code
draw them (the same in distribution when groups have 2 images; with groups of 4, a third of the
triplets). ``shared_neg`` and ``shared_full`` always give one per anchor. :func:`triplet_pair_masks` turns sampled triplets into pair masks
for a pair loss's ``from_similarity``.

Randomness comes only from the explicit ``generator``: the same generator state gives the same
triplets. Memory O(B²); time O(B² + T log B).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.core.registry import Registry
from dmlkit.losses.triplet_sampling import (
    DistanceWeightedSampler,
    TripletSampler,
    distance_weighted_probs_with_fallback,
    draw_one_per_row,
    uniform_probs,
)

SHARED_SAMPLERS: Registry[TripletSampler] = Registry("shared triplet sampler")
Triplets = tuple[Tensor, Tensor, Tensor]


def check_batch_masks(dist: Tensor, pos: Tensor, neg: Tensor, name: str) -> None:
    """Require ``dist``, ``pos``, ``neg`` of one square shape ``(B, B)``: the batch against itself."""
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(
            f"{name}: expected the batch against itself, distances of shape (B, B), got "
            f"{tuple(dist.shape)} (shared triplets need the relations between references)"
        )
    for mask_name, mask in (("pos", pos), ("neg", neg)):
        if mask.dtype != torch.bool or mask.shape != dist.shape:
            raise ValueError(
                f"{name}: expected bool {mask_name} of shape {tuple(dist.shape)}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )


def triplet_pair_masks(triplets: Triplets, shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Bool masks ``pos, neg`` of ``shape`` with ``pos[a, p]`` and ``neg[a, n]`` set for every
    sampled triplet, for a pair loss's ``from_similarity(sim, pos, neg)``."""
    a, p, n = triplets
    pos = torch.zeros(shape, dtype=torch.bool, device=a.device)
    neg = torch.zeros(shape, dtype=torch.bool, device=a.device)
    pos[a, p] = True
    neg[a, n] = True
    return pos, neg


class SharedRandomSampler:
    """``shared_random``: distance-weighted triplets on randomly permuted labels (module docstring).

    ``SharedRandomSampler(lower_cutoff=0.5, upper_cutoff=None, generator=None, per_anchor=False)``.
    The permutation ``π`` is ``torch.randperm(B, generator)``, drawn before the triplets from the
    same generator.
    """

    def __init__(
        self,
        lower_cutoff: float = 0.5,
        upper_cutoff: float | None = None,
        generator: torch.Generator | None = None,
        per_anchor: bool = False,
    ) -> None:
        self.generator = generator
        self.distance_weighted = DistanceWeightedSampler(
            lower_cutoff, upper_cutoff, generator, per_anchor
        )

    def __call__(self, dist: Tensor, pos: Tensor, neg: Tensor, dim: int) -> Triplets:
        check_batch_masks(dist, pos, neg, "shared_random")
        device = self.generator.device if self.generator is not None else dist.device
        perm = torch.randperm(dist.shape[0], generator=self.generator, device=device)
        perm = perm.to(dist.device)
        # ỹ = y[π]: (ỹ_i == ỹ_j) = pos[π_i, π_j]; the diagonal stays excluded (pos[k, k] = False)
        pos_perm = pos[perm][:, perm]
        neg_perm = neg[perm][:, perm]
        return self.distance_weighted(dist, pos_perm, neg_perm, dim)

    def __repr__(self) -> str:
        return f"SharedRandomSampler({_options(self.distance_weighted)})"


def _options(dw: DistanceWeightedSampler) -> str:
    return (
        f"lower_cutoff={dw.lower_cutoff}, upper_cutoff={dw.upper_cutoff}, "
        f"per_anchor={dw.per_anchor}"
    )


class SharedNegSampler:
    """``shared_neg`` (``full=False``) and ``shared_full`` (``full=True``): pairwise-different
    classes of anchor, positive and negative (module docstring).

    ``SharedNegSampler(full=False, lower_cutoff=0.5, upper_cutoff=None, generator=None)``. Per
    anchor ``a`` with a negative: ``n ~ w(d_an)`` over ``neg[a]``; ``p`` over
    ``neg[a] & neg[n]``, uniform or ``~ w(d_ap)``. Anchors without a negative give no triplet.
    """

    def __init__(
        self,
        full: bool = False,
        lower_cutoff: float = 0.5,
        upper_cutoff: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.full = bool(full)
        self.generator = generator
        self.distance_weighted = DistanceWeightedSampler(lower_cutoff, upper_cutoff, generator)

    @property
    def name(self) -> str:
        return "shared_full" if self.full else "shared_neg"

    def _weighted(self, dist: Tensor, candidates: Tensor, dim: int) -> Tensor:
        dw = self.distance_weighted
        return distance_weighted_probs_with_fallback(
            dist, candidates, dim, dw.lower_cutoff, dw.upper_cutoff
        )

    def __call__(self, dist: Tensor, pos: Tensor, neg: Tensor, dim: int) -> Triplets:
        check_batch_masks(dist, pos, neg, self.name)
        with torch.no_grad():
            dist = dist.detach()
            anchors = torch.nonzero(neg.any(dim=1)).squeeze(1)
            if anchors.numel() == 0:
                raise ValueError(
                    f"{self.name}: expected a batch with at least 3 classes, got one without any "
                    "pair of different classes"
                )
            n = draw_one_per_row(self._weighted(dist, neg, dim), anchors, self.generator)
            third = torch.zeros_like(neg)
            third[anchors] = neg[anchors] & neg[n]  # classes other than the anchor's and n's
            keep = third[anchors].any(dim=1)
            if not bool(keep.any()):
                raise ValueError(
                    f"{self.name}: expected a batch with at least 3 classes (anchor, positive and "
                    "negative of pairwise different classes), got one in which no anchor has a "
                    "positive of a third class; use batches with more classes or shared_random"
                )
            if self.full:
                probs = self._weighted(dist, third, dim)
            else:
                probs = uniform_probs(third, dist.dtype)
            p = draw_one_per_row(probs, anchors, self.generator)
            return anchors[keep], p[keep], n[keep]

    def __repr__(self) -> str:
        dw = self.distance_weighted
        return (
            f"SharedNegSampler(full={self.full}, lower_cutoff={dw.lower_cutoff}, "
            f"upper_cutoff={dw.upper_cutoff})"
        )


class SurrogateSampler:
    """``surrogate``: blocks of ``m`` consecutive rows of a shuffled batch are the positive groups;
    negatives by distance from other blocks, never of the anchor's class (module docstring).

    ``SurrogateSampler(m=4, lower_cutoff=0.5, upper_cutoff=None, generator=None,
    per_anchor=False)``; the batch size must be a multiple of ``m``. The block of row ``i``,
    ``i // m``, is its surrogate id: a loss with a learnable margin per class indexes it by this id
    (as the paper-era code indexes its β per surrogate id), see
    :class:`~dmlkit.methods.shared_task.SharedTripletLoss`.
    """

    def __init__(
        self,
        m: int = 4,
        lower_cutoff: float = 0.5,
        upper_cutoff: float | None = None,
        generator: torch.Generator | None = None,
        per_anchor: bool = False,
    ) -> None:
        if isinstance(m, bool) or not isinstance(m, int) or m < 2:
            raise ValueError(f"m: expected a block size >= 2 (a positive per anchor), got {m!r}")
        self.m = m
        self.distance_weighted = DistanceWeightedSampler(
            lower_cutoff, upper_cutoff, generator, per_anchor
        )

    def surrogate_groups(self, batch_size: int, device: torch.device) -> Tensor:
        """Surrogate id of each row ``(B,)``: ``i // m`` (distinct ids, one per block)."""
        if batch_size % self.m:
            raise ValueError(
                f"surrogate: expected a batch size that is a multiple of m={self.m} "
                f"(blocks of m rows share a surrogate id), got {batch_size}"
            )
        return torch.arange(batch_size, device=device) // self.m

    def __call__(self, dist: Tensor, pos: Tensor, neg: Tensor, dim: int) -> Triplets:
        check_batch_masks(dist, pos, neg, "surrogate")
        groups = self.surrogate_groups(dist.shape[0], dist.device)
        same = groups[:, None] == groups[None, :]
        same.fill_diagonal_(False)
        other_class = neg & (groups[:, None] != groups[None, :])
        return self.distance_weighted(dist, same, other_class, dim)

    def __repr__(self) -> str:
        return f"SurrogateSampler(m={self.m}, {_options(self.distance_weighted)})"


@SHARED_SAMPLERS.register("shared_random")
def shared_random(**kwargs: object) -> TripletSampler:
    """Distance-weighted triplets on randomly permuted labels (the DiVA default)."""
    return SharedRandomSampler(**kwargs)  # type: ignore[arg-type]


@SHARED_SAMPLERS.register("shared_neg")
def shared_neg(**kwargs: object) -> TripletSampler:
    """Negative by distance from another class, positive uniform from a third class."""
    return SharedNegSampler(full=False, **kwargs)  # type: ignore[arg-type]


@SHARED_SAMPLERS.register("shared_full")
def shared_full(**kwargs: object) -> TripletSampler:
    """Negative and positive by distance, from pairwise different classes."""
    return SharedNegSampler(full=True, **kwargs)  # type: ignore[arg-type]


@SHARED_SAMPLERS.register("surrogate")
def surrogate(**kwargs: object) -> TripletSampler:
    """Blocks of ``m`` rows of a shuffled batch as groups; negatives never of the anchor's class."""
    return SurrogateSampler(**kwargs)  # type: ignore[arg-type]


def create_shared_sampler(name: str, **kwargs: object) -> TripletSampler:
    """The shared sampler ``name`` (``shared_random``, ``shared_neg``, ``shared_full``,
    ``surrogate``) with ``lower_cutoff``, ``upper_cutoff``, ``generator`` (``shared_random`` and
    ``surrogate``: ``per_anchor``; ``surrogate``: ``m``)."""
    return SHARED_SAMPLERS.create(name, **kwargs)
