"""Greedy k-center: exact picks, distinct candidates, farthest-first order, the 2-approximation."""

from __future__ import annotations

import itertools

import pytest
import torch

from dmlkit.methods import greedy_k_center


def loop_reference(pool: torch.Tensor, init: torch.Tensor, k: int) -> list[list[int]]:
    picks = []
    for c in range(pool.shape[0]):
        centres = [init[c, q] for q in range(init.shape[1])]
        chosen: list[int] = []
        for _ in range(k):
            best, best_d = -1, -1.0
            for p in range(pool.shape[1]):
                if p in chosen:
                    continue
                d = min(float(((pool[c, p] - z) ** 2).sum()) for z in centres)
                if d > best_d:
                    best, best_d = p, d
            chosen.append(best)
            centres.append(pool[c, best])
        picks.append(chosen)
    return picks


def radius(points: torch.Tensor, centres: torch.Tensor) -> float:
    return float(torch.cdist(points, centres).min(dim=1).values.max())


def test_picks_are_exact_distinct_candidates_in_farthest_first_order() -> None:
    g = torch.Generator().manual_seed(0)
    pool = torch.randn(6, 9, 5, generator=g, dtype=torch.float64)
    init = torch.randn(6, 2, 5, generator=g, dtype=torch.float64)
    centres, index = greedy_k_center(pool, init, 4)
    assert centres.shape == (6, 4, 5) and index.shape == (6, 4)
    assert index.tolist() == loop_reference(pool, init, 4)
    for c in range(6):
        assert len(set(index[c].tolist())) == 4
        for t in range(4):
            assert torch.equal(centres[c, t], pool[c, index[c, t]])


def test_first_pick_from_zero_init_is_the_largest_norm_candidate() -> None:
    g = torch.Generator().manual_seed(1)
    pool = torch.randn(50, 7, 16, generator=g)
    _, index = greedy_k_center(pool, torch.zeros(50, 4, 16), 4)
    assert torch.equal(index[:, 0], pool.norm(dim=2).argmax(dim=1))


def test_duplicates_in_the_pool_still_give_distinct_candidates() -> None:
    pool = torch.zeros(2, 5, 3)
    pool[:, 0] = 1.0
    _, index = greedy_k_center(pool, torch.zeros(2, 1, 3), 4)
    assert all(len(set(row)) == 4 for row in index.tolist())
    assert index[:, 0].tolist() == [0, 0]


def test_chunking_over_classes_changes_nothing() -> None:
    g = torch.Generator().manual_seed(2)
    pool = torch.randn(37, 7, 8, generator=g)
    init = torch.randn(37, 3, 8, generator=g)
    whole = greedy_k_center(pool, init, 3)
    chunked = greedy_k_center(pool, init, 3, chunk_elements=7 * 8 * 5)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])


@pytest.mark.parametrize("seed", range(40))
def test_covering_radius_is_within_twice_the_optimum(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(1, 8, 2, generator=g, dtype=torch.float64) * torch.rand(1, generator=g) * 3
    init = torch.randn(1, 2, 2, generator=g, dtype=torch.float64)
    centres, _ = greedy_k_center(pool, init, 3)
    ours = radius(pool[0], torch.cat([init[0], centres[0]]))
    best = min(
        radius(pool[0], torch.cat([init[0], pool[0, list(subset)]]))
        for subset in itertools.combinations(range(8), 3)
    )
    assert ours <= 2.0 * best + 1e-12


def test_bad_inputs_name_what_was_expected() -> None:
    with pytest.raises(ValueError, match=r"k: expected 1 <= k <= P=3"):
        greedy_k_center(torch.zeros(2, 3, 4), torch.zeros(2, 1, 4), 4)
    with pytest.raises(ValueError, match=r"init: expected \(C=2, Q >= 1, D=4\)"):
        greedy_k_center(torch.zeros(2, 3, 4), torch.zeros(2, 1, 5), 2)
    with pytest.raises(ValueError, match=r"pool, init: expected \(C, P, D\)"):
        greedy_k_center(torch.zeros(3, 4), torch.zeros(2, 1, 4), 2)
    with pytest.raises(ValueError, match="finite"):
        greedy_k_center(torch.full((2, 3, 4), float("nan")), torch.zeros(2, 1, 4), 2)
