"""Distance-weighted triplet sampling: structure, analytic probabilities, empirical frequencies."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from dmlkit.core import relation_masks
from dmlkit.losses.triplet_sampling import (
    DistanceWeightedSampler,
    PositivePairs,
    cosine_to_distance,
    distance_weighted_probs_with_fallback,
    positive_pairs,
    sample_per_positive_pair,
)


def _row(distances: list[float]) -> torch.Tensor:
    """Row 0 = an anchor whose candidates sit at the given distances."""
    return torch.tensor([distances], dtype=torch.float64)


def _unit_batch(seed: int, b: int = 24, d: int = 4, classes: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, classes, (b,), generator=g)
    pos, neg = relation_masks(y, y, self_index=torch.arange(b))
    return cosine_to_distance(x @ x.T), pos, neg, y


def test_probabilities_match_the_inverse_sphere_density() -> None:
    # D = 4: q(d) ∝ d² (1 - d²/4)^{1/2}; weights 1/q at max(d, 0.5), zero at d >= 1.4
    distances = [0.2, 0.5, 0.8, 1.1, 1.3, 1.5]
    probs = distance_weighted_probs_with_fallback(
        _row(distances), torch.ones(1, 6, dtype=torch.bool), 4
    )[0]
    w = [
        0.0 if d >= 1.4 else 1 / (max(d, 0.5) ** 2 * math.sqrt(1 - max(d, 0.5) ** 2 / 4))
        for d in distances
    ]
    expected = torch.tensor([v / sum(w) for v in w], dtype=torch.float64)
    torch.testing.assert_close(probs, expected, rtol=1e-9, atol=1e-12)


def test_high_dimension_concentrates_on_the_nearest_candidates() -> None:
    # D = 128, no upper cutoff: candidates below the 0.5 cutoff share the mass equally
    distances = [0.3, 0.45, 1.0, 1.4, 1.41]
    probs = distance_weighted_probs_with_fallback(
        _row(distances), torch.ones(1, 5, dtype=torch.bool), 128, upper_cutoff=None
    )[0]
    torch.testing.assert_close(probs[:2], torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert float(probs[2:].sum()) < 1e-12


def test_cutoff_removing_every_negative_falls_back_to_uniform_negatives() -> None:
    dist = _row([0.0, 1.45, 1.5, 1.9, 0.1])  # column 0 self, 4 a positive
    neg = torch.tensor([[False, True, True, True, False]])
    probs = distance_weighted_probs_with_fallback(dist, neg, 16)
    torch.testing.assert_close(
        probs[0], torch.tensor([0, 1 / 3, 1 / 3, 1 / 3, 0], dtype=torch.float64)
    )
    antipodal = distance_weighted_probs_with_fallback(
        _row([2.0, 1.0]), torch.ones(1, 2, dtype=torch.bool), 128, upper_cutoff=None
    )
    assert torch.isfinite(antipodal).all() and float(antipodal.sum()) == pytest.approx(1.0)


def test_one_triplet_per_positive_pair_with_valid_roles() -> None:
    dist, pos, neg, _ = _unit_batch(0)
    neg[3] = False  # anchor 3 has no negative: none of its positive pairs gives a triplet
    a, p, n = DistanceWeightedSampler(generator=torch.Generator().manual_seed(0))(dist, pos, neg, 4)
    expected = torch.nonzero(pos & neg.any(1, keepdim=True))
    assert torch.equal(torch.stack([a, p], 1), expected)
    assert bool(neg[a, n].all()) and not bool((a == 3).any())
    assert a.dtype == p.dtype == n.dtype == torch.long


def test_empirical_frequencies_match_the_probabilities() -> None:
    probs = distance_weighted_probs_with_fallback(
        _row([0.0, 0.6, 0.9, 1.2, 1.35, 1.39]),
        torch.tensor([[False, True, True, True, True, True]]),
        4,
    )
    draws = 40_000
    pairs = PositivePairs(
        torch.zeros(draws, dtype=torch.long),
        torch.zeros(draws, dtype=torch.long),
        torch.arange(draws),
        draws,
    )
    n = sample_per_positive_pair(probs, pairs, torch.Generator().manual_seed(0))
    counts = torch.bincount(n, minlength=6).double()
    assert counts[0] == 0
    expected = probs[0, 1:] * draws
    chi2 = float(((counts[1:] - expected) ** 2 / expected).sum())
    assert stats.chi2.sf(chi2, df=4) > 1e-4


def test_generator_makes_draws_reproducible() -> None:
    dist, pos, neg, _ = _unit_batch(1, b=40)
    draw = [
        DistanceWeightedSampler(generator=torch.Generator().manual_seed(s))(dist, pos, neg, 4)[2]
        for s in (5, 5, 6)
    ]
    assert torch.equal(draw[0], draw[1]) and not torch.equal(draw[0], draw[2])


def test_permutation_and_renaming_permute_the_probabilities() -> None:
    dist, _, neg, y = _unit_batch(2)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    probs = distance_weighted_probs_with_fallback(dist, neg, 4)
    _, neg2 = relation_masks(y[perm] * 7 + 1, y[perm] * 7 + 1, self_index=torch.arange(24))
    permuted = distance_weighted_probs_with_fallback(dist[perm][:, perm], neg2, 4)
    torch.testing.assert_close(permuted, probs[perm][:, perm])


def test_positive_pairs_layout() -> None:
    pos = torch.tensor([[False, True, True], [False, False, False], [True, False, True]])
    pairs = positive_pairs(pos)
    assert pairs.rows.tolist() == [0, 0, 2, 2] and pairs.cols.tolist() == [1, 2, 0, 2]
    assert pairs.slots.tolist() == [0, 1, 0, 1] and pairs.width == 2
    empty = positive_pairs(torch.zeros(2, 2, dtype=torch.bool))
    assert empty.rows.numel() == 0 and empty.width == 0


def test_no_positive_pair_gives_empty_triplets() -> None:
    dist, _, neg, _ = _unit_batch(3, b=5)
    a, p, n = DistanceWeightedSampler()(dist, torch.zeros_like(neg), neg, 4)
    assert a.numel() == p.numel() == n.numel() == 0


def test_bad_cutoffs() -> None:
    with pytest.raises(ValueError, match="lower_cutoff"):
        DistanceWeightedSampler(lower_cutoff=0.0)
    with pytest.raises(ValueError, match="upper_cutoff"):
        DistanceWeightedSampler(lower_cutoff=0.5, upper_cutoff=0.4)
