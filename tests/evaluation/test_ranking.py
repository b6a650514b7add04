"""Exact first-relevant rank and top-k list against an explicit loop over the full ranking."""

from __future__ import annotations

import pytest
import torch

from dmlkit.evaluation import rank_references
from dmlkit.evaluation.ranking import label_relevance, neighbour_relevance


def _loop_reference(
    s: torch.Tensor, relevant: torch.Tensor, k: int
) -> tuple[list[list[int]], list[int]]:
    """Sort every row by (score desc, index asc); read the top k and the first relevant rank."""
    tops, firsts = [], []
    for i in range(s.shape[0]):
        order = sorted(
            (j for j in range(s.shape[1]) if s[i, j] != float("-inf")),
            key=lambda j: (-float(s[i, j]), j),
        )
        tops.append(order[:k])
        ranks = [r for r, j in enumerate(order) if relevant[i, j]]
        firsts.append(ranks[0] if ranks else -1)
    return tops, firsts


def _quantised(seed: int, n: int, d: int = 3) -> torch.Tensor:
    # few distinct values: many exact ties and duplicated rows
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-2, 3, (n, d), generator=g).float()


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("budget", [1 << 30, 8 * 40 * 3])  # one block / blocks of 3 rows
def test_leave_one_out_matches_loop_with_ties(k: int, budget: int) -> None:
    x = _quantised(0, 40)
    y = torch.randint(0, 6, (40,), generator=torch.Generator().manual_seed(1))
    out = rank_references(x, y, None, None, k, similarity="dot", memory_bytes=budget)
    s = x @ x.T
    s.fill_diagonal_(float("-inf"))
    rel = label_relevance(y, y)
    rel.fill_diagonal_(False)
    tops, firsts = _loop_reference(s, rel, k)
    assert out.index.tolist() == tops
    assert out.first_rank.tolist() == firsts
    # many queries have no relevant reference in their short list: the full scoring path ran
    assert int((out.first_rank >= k).sum()) > 5


def test_gallery_and_multi_label_match_loop() -> None:
    q, r = _quantised(2, 25), _quantised(3, 60)
    g = torch.Generator().manual_seed(4)
    ql = (torch.rand(25, 4, generator=g) < 0.3).long()
    rl = (torch.rand(60, 4, generator=g) < 0.3).long()
    out = rank_references(q, ql, r, rl, 2, similarity="euclidean", memory_bytes=8 * 60 * 4)
    s = -(torch.cdist(q, r) ** 2)
    rel = (ql @ rl.T) > 0
    tops, firsts = _loop_reference(s, rel, 2)
    assert out.index.tolist() == tops
    assert out.first_rank.tolist() == firsts
    assert -1 in firsts  # a query sharing no label with any reference


def test_neighbour_relevance_chunks() -> None:
    ql = torch.tensor([0, 1, 2])
    rl = torch.tensor([1, 0, 2, 2])
    index = torch.tensor([[1, 0], [0, 3], [3, 2]])
    expected = [[True, False], [True, False], [True, True]]
    for budget in (1, 1 << 20):
        assert neighbour_relevance(ql, rl, index, budget).tolist() == expected
    multi_q = torch.tensor([[1, 0], [0, 1], [1, 1]])
    multi_r = torch.tensor([[0, 1], [1, 0], [0, 0], [1, 1]])
    assert neighbour_relevance(multi_q, multi_r, index, 1).tolist() == [
        [True, False],
        [True, True],
        [True, False],
    ]
