"""Shared-triplet samplers: class relations of (a, p, n), distance weighting, determinism, small
batches (the properties listed for "Sharing Matters" in the research notes, section 8)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from scipy import stats

from dmlkit.core import relation_masks
from dmlkit.losses import MarginLoss
from dmlkit.losses.triplet import TripletLoss
from dmlkit.losses.triplet_sampling import cosine_to_distance
from dmlkit.sampling import (
    SHARED_SAMPLERS,
    SharedNegSampler,
    SharedRandomSampler,
    SurrogateSampler,
    create_shared_sampler,
    triplet_pair_masks,
)

NAMES = ("shared_random", "shared_neg", "shared_full", "surrogate")


def _batch(
    seed: int, classes: int = 8, m: int = 4, dim: int = 16, shuffle: bool = False
) -> tuple[torch.Tensor, ...]:
    """Unit embeddings of ``classes x m`` items (shuffled rows for the surrogate's loader)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(m)
    if shuffle:
        y = y[torch.randperm(len(y), generator=g)]
    x = torch.nn.functional.normalize(torch.randn(len(y), dim, generator=g, dtype=torch.float64))
    pos, neg = relation_masks(y, y, self_index=torch.arange(len(y)))
    return cosine_to_distance(x @ x.T), pos, neg, y


def _sampler(name: str, seed: int = 0, **kwargs: object):
    extra = {"m": 4} if name == "surrogate" else {}
    return create_shared_sampler(
        name, generator=torch.Generator().manual_seed(seed), **extra, **kwargs
    )


def _distances(row: list[float]) -> torch.Tensor:
    """Distances ``(n, n)``: item 0 at the given distances from the others, which sit at sqrt 2
    from each other (orthogonal unit vectors)."""
    n = len(row)
    dist = torch.full((n, n), 2**0.5, dtype=torch.float64).fill_diagonal_(0.0)
    dist[0] = dist[:, 0] = torch.tensor(row, dtype=torch.float64)
    return dist


def _inverse_density(d: float, dim: int) -> float:
    """1/q(max(d, 0.5)) with q(d) = d^(D-2) (1 - d²/4)^((D-3)/2)."""
    d = max(d, 0.5)
    return 1.0 / (d ** (dim - 2) * (1 - d * d / 4) ** ((dim - 3) / 2))


def test_registry_names() -> None:
    assert set(NAMES) <= set(SHARED_SAMPLERS.names())
    assert isinstance(_sampler("shared_full"), SharedNegSampler)
    assert _sampler("shared_full").full and not _sampler("shared_neg").full


@pytest.mark.parametrize("seed", range(5))
def test_shared_neg_and_full_pairwise_different_classes_one_triplet_per_anchor(seed: int) -> None:
    dist, pos, neg, y = _batch(seed)
    for name in ("shared_neg", "shared_full"):
        a, p, n = _sampler(name, seed)(dist, pos, neg, 16)
        assert a.tolist() == list(range(len(y)))  # every anchor, in order
        assert (y[a] != y[p]).all() and (y[a] != y[n]).all() and (y[p] != y[n]).all()
        assert (a != p).all() and (a != n).all() and (p != n).all()


@pytest.mark.parametrize("seed", range(5))
def test_shared_random_relations_under_the_permuted_labels(seed: int) -> None:
    dist, pos, neg, y = _batch(seed, classes=6, m=2)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    a, p, n = SharedRandomSampler(generator=gen)(dist, pos, neg, 16)
    y_perm = y[perm]
    assert a.tolist() == list(range(len(y)))  # m = 2: one positive per anchor
    assert (y_perm[p] == y_perm[a]).all() and (y_perm[n] != y_perm[a]).all()
    assert (a != p).all()


def test_shared_random_same_class_rates_match_the_permutation() -> None:
    # positive and negative share the anchor's true class with probability (m - 1)/(B - 1)
    dist, pos, neg, y = _batch(0, classes=16, m=2)
    sampler = SharedRandomSampler(generator=torch.Generator().manual_seed(3))
    same_p = same_n = total = 0
    for _ in range(600):
        a, p, n = sampler(dist, pos, neg, 16)
        same_p += int((y[p] == y[a]).sum())
        same_n += int((y[n] == y[a]).sum())
        total += a.numel()
    expected = 1 / 31
    assert same_p / total == pytest.approx(expected, abs=0.006)
    assert 0 < same_n / total < 3 * expected  # the true partner can be drawn as a negative


@pytest.mark.parametrize("seed", range(5))
def test_surrogate_blocks_and_negatives_never_of_the_anchors_class(seed: int) -> None:
    dist, pos, neg, y = _batch(seed, shuffle=True)
    a, p, n = _sampler("surrogate", seed)(dist, pos, neg, 16)
    assert a.numel() == len(y) * 3  # every pair of a block of 4
    assert (a // 4 == p // 4).all() and (a != p).all()
    assert (n // 4 != a // 4).all()
    assert (y[n] != y[a]).all()  # hard invariant


@pytest.mark.parametrize("seed", range(3))
def test_per_anchor_gives_one_triplet_per_anchor(seed: int) -> None:
    """per_anchor (the authors' rule): shared_random and surrogate draw one triplet per anchor
    whose (permuted or surrogate) group has another member, with the same relations."""
    dist, pos, neg, y = _batch(seed, shuffle=True)
    a, p, n = _sampler("surrogate", seed, per_anchor=True)(dist, pos, neg, 16)
    assert a.tolist() == list(range(len(y)))
    assert (a // 4 == p // 4).all() and (a != p).all() and (n // 4 != a // 4).all()
    assert (y[n] != y[a]).all()
    dist, pos, neg, y = _batch(seed, classes=8, m=4)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    a, p, n = _sampler("shared_random", seed, per_anchor=True)(dist, pos, neg, 16)
    y_perm = y[perm]
    assert a.tolist() == list(range(len(y)))  # groups of 4: 32 triplets, not 96
    assert (y_perm[p] == y_perm[a]).all() and (y_perm[n] != y_perm[a]).all()
    assert "per_anchor=True" in repr(_sampler("shared_random", per_anchor=True))


def test_surrogate_positive_class_is_unconstrained() -> None:
    # in a shuffled batch a block may hold two items of one class: then the positive shares it
    y = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])
    dist = torch.full((8, 8), 2**0.5, dtype=torch.float64).fill_diagonal_(0.0)
    pos, neg = relation_masks(y, y, self_index=torch.arange(8))
    a, p, n = SurrogateSampler(m=2, generator=torch.Generator().manual_seed(0))(dist, pos, neg, 8)
    assert (a[:2].tolist(), p[:2].tolist()) == ([0, 1], [1, 0])
    assert (y[n[:2]] != 0).all()


def test_surrogate_needs_whole_blocks_and_m_of_two() -> None:
    dist, pos, neg, _ = _batch(0, classes=5, m=2)
    with pytest.raises(ValueError, match="multiple of m=4"):
        SurrogateSampler(m=4)(dist, pos, neg, 16)
    with pytest.raises(ValueError, match="block size >= 2"):
        SurrogateSampler(m=1)


@pytest.mark.parametrize("name", ("shared_neg", "shared_full"))
def test_fewer_than_three_classes_is_a_clear_error(name: str) -> None:
    for classes in (1, 2):
        dist, pos, neg, _ = _batch(0, classes=classes, m=4)
        with pytest.raises(ValueError, match="at least 3 classes"):
            _sampler(name)(dist, pos, neg, 16)
    dist, pos, neg, y = _batch(0, classes=3, m=1)  # three single items: one triplet each
    a, p, n = _sampler(name)(dist, pos, neg, 16)
    assert a.tolist() == [0, 1, 2]
    assert all(len({int(y[i]), int(y[j]), int(y[k])}) == 3 for i, j, k in zip(a, p, n, strict=True))


def test_shared_random_with_all_unique_labels_gives_no_triplet() -> None:
    dist, pos, neg, _ = _batch(0, classes=6, m=1)
    a, p, n = _sampler("shared_random")(dist, pos, neg, 16)
    assert a.numel() == p.numel() == n.numel() == 0


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_triplets_other_seed_others(name: str) -> None:
    dist, pos, neg, _ = _batch(1, shuffle=name == "surrogate")
    first = _sampler(name, 7)(dist, pos, neg, 16)
    again = _sampler(name, 7)(dist, pos, neg, 16)
    other = _sampler(name, 8)(dist, pos, neg, 16)
    assert all(torch.equal(u, v) for u, v in zip(first, again, strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(first, other, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_relabelling_classes_leaves_the_triplets_unchanged(name: str) -> None:
    dist, _, _, y = _batch(2, shuffle=name == "surrogate")
    renamed = (y * 7 + 3) % 101  # a bijection of the class ids
    triplets = []
    for labels in (y, renamed):
        pos, neg = relation_masks(labels, labels, self_index=torch.arange(len(y)))
        triplets.append(_sampler(name, 5)(dist, pos, neg, 16))
    assert all(torch.equal(u, v) for u, v in zip(*triplets, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_rejects_a_reference_set_other_than_the_batch(name: str) -> None:
    dist, pos, neg, _ = _batch(0)
    with pytest.raises(ValueError, match=r"\(B, B\)"):
        _sampler(name)(dist[:, :-1], pos[:, :-1], neg[:, :-1], 16)
    with pytest.raises(ValueError, match="bool neg"):
        _sampler(name)(dist, pos, neg.float(), 16)


@pytest.mark.parametrize("dim", (2, 3, 128, 1024))
@pytest.mark.parametrize("name", NAMES)
def test_no_nan_and_valid_indices_at_any_dimension_and_antipodes(name: str, dim: int) -> None:
    # rows 0-3 and 4-7 are antipodal pairs (d = 2), duplicates sit at d = 0
    v = torch.nn.functional.normalize(torch.randn(4, dim, dtype=torch.float64), dim=1)
    x = torch.cat([v, -v])
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    pos, neg = relation_masks(y, y, self_index=torch.arange(8))
    dist = cosine_to_distance((x @ x.T).clamp(-1.0, 1.0))
    gen = torch.Generator().manual_seed(0)
    sampler = SurrogateSampler(m=2, generator=gen) if name == "surrogate" else _sampler(name)
    a, p, n = sampler(dist, pos, neg, dim)
    assert a.numel() > 0
    assert all(((t >= 0) & (t < 8)).all() for t in (a, p, n))


def test_negative_frequencies_follow_the_inverse_sphere_density() -> None:
    # anchor 0 of class 0; negatives of classes 1-4 at chosen distances, D = 4 (soft weights)
    dist_row = [0.0, 0.4, 0.7, 1.0, 1.3, 1.6, 0.3]
    y = torch.tensor([0, 1, 2, 3, 4, 5, 0])
    dist = _distances(dist_row)
    pos, neg = relation_masks(y, y, self_index=torch.arange(7))
    sampler = SharedNegSampler(generator=torch.Generator().manual_seed(11))
    draws = 4000
    counts = Counter(int(sampler(dist, pos, neg, 4)[2][0]) for _ in range(draws))
    assert counts[6] == 0 and counts[0] == 0  # same class and the anchor itself: never
    w = [_inverse_density(d, 4) for d in dist_row[1:6]]
    expected = [draws * v / sum(w) for v in w]
    observed = [counts[j] for j in range(1, 6)]
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_high_dimension_concentrates_on_the_nearest_negatives() -> None:
    # D = 128: the two candidates below the 0.5 cutoff get all the mass, equally
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    dist = _distances([0.0, 0.3, 0.45, 1.0, 1.4, 1.41])
    pos, neg = relation_masks(y, y, self_index=torch.arange(6))
    sampler = SharedNegSampler(generator=torch.Generator().manual_seed(0))
    counts = Counter(int(sampler(dist, pos, neg, 128)[2][0]) for _ in range(2000))
    assert set(counts) == {1, 2}
    assert counts[1] / 2000 == pytest.approx(0.5, abs=0.05)


def test_shared_neg_positive_is_uniform_and_shared_full_positive_is_near() -> None:
    # anchor 0, negative forced to item 1 (the only one below the cutoff); positives 2-5 from
    # four other classes at different distances
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    dist = _distances([0.0, 0.1, 0.8, 1.3, 1.35, 1.4])
    pos, neg = relation_masks(y, y, self_index=torch.arange(6))
    draws = 2000
    uniform = SharedNegSampler(generator=torch.Generator().manual_seed(1))
    near = SharedNegSampler(full=True, generator=torch.Generator().manual_seed(1))
    got_uniform = Counter(int(uniform(dist, pos, neg, 128)[1][0]) for _ in range(draws))
    got_near = Counter(int(near(dist, pos, neg, 128)[1][0]) for _ in range(draws))
    assert stats.chisquare([got_uniform[j] for j in range(2, 6)]).pvalue > 1e-3
    assert got_near[2] == draws  # weighted: the candidate at d = 0.8 takes all the mass


def test_sampling_uses_detached_distances() -> None:
    dist, pos, neg, _ = _batch(0)
    dist = dist.clone().requires_grad_(True)
    for name in NAMES:
        for t in _sampler(name)(dist, pos, neg, 16):
            assert not t.requires_grad and t.dtype == torch.long


def test_margin_loss_scores_shared_triplets_with_the_anchor_class_beta() -> None:
    _, _, _, y = _batch(0, dim=8)
    emb = torch.nn.functional.normalize(torch.randn(len(y), 8, dtype=torch.float64), dim=1)
    emb.requires_grad_(True)
    loss = MarginLoss(num_classes=8, triplets=_sampler("shared_neg")).double()
    value = loss(emb, y)
    value.backward()
    assert torch.isfinite(value) and value > 0
    assert emb.grad is not None and loss.beta.grad is not None
    assert (loss.beta.grad != 0).sum() > 0


def test_pair_masks_feed_a_pair_or_triplet_loss() -> None:
    a, p, n = torch.tensor([0, 1, 2]), torch.tensor([2, 3, 0]), torch.tensor([3, 0, 1])
    pos, neg = triplet_pair_masks((a, p, n), (4, 4))
    assert torch.nonzero(pos).tolist() == [[0, 2], [1, 3], [2, 0]]
    assert torch.nonzero(neg).tolist() == [[0, 3], [1, 0], [2, 1]]
    sim = torch.tensor(
        [[1.0, 0.0, 0.5, 0.2], [0.0, 1.0, 0.0, 0.1], [0.5, 0.0, 1.0, 0.0], [0.2, 0.1, 0.0, 1.0]]
    )
    value = TripletLoss(margin=0.1, reduction="sum").from_similarity(sim, pos, neg)
    assert float(value) == pytest.approx(0.0)  # every [s_an - s_ap + 0.1]_+ is 0
    value = TripletLoss(margin=0.4, reduction="sum").from_similarity(sim, pos, neg)
    # (0.2 - 0.5 + 0.4) + (0.0 - 0.1 + 0.4) + [0.0 - 0.5 + 0.4]_+
    assert float(value) == pytest.approx(0.1 + 0.3 + 0.0, abs=1e-6)
