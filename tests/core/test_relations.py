"""core.relations: class ids, multi-hot (int and bool), relation_fn, self exclusion by index."""

from __future__ import annotations

import pytest
import torch

from dmlkit.core import relation_masks


def test_class_ids_with_self_excluded() -> None:
    y = torch.tensor([0, 0, 1])
    pos, neg = relation_masks(y, y, self_index=torch.arange(3))
    assert pos.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert neg.tolist() == [[False, False, True], [False, False, True], [True, True, False]]
    pos, neg = relation_masks(y, y)  # no self index: the diagonal is a positive
    assert pos.diagonal().all() and not neg.diagonal().any()


def test_multi_hot_int_and_bool() -> None:
    mh = torch.tensor([[1, 0], [1, 1], [0, 1]])
    pos, neg = relation_masks(mh, mh)
    assert pos.tolist() == [[True, True, False], [True, True, True], [False, True, True]]
    assert torch.equal(neg, ~pos)
    pos_b, neg_b = relation_masks(mh.bool(), mh.bool())
    assert torch.equal(pos_b, pos) and torch.equal(neg_b, neg)
    # a row without any label shares nothing with anyone
    empty = torch.tensor([[0, 0], [1, 0]])
    assert relation_masks(empty, empty)[0].tolist() == [[False, False], [False, True]]


def test_memory_style_self_index() -> None:
    # row 0's own copy is reference column 2; row 1 has no copy in the reference set
    pos, neg = relation_masks(
        torch.tensor([0, 1]), torch.tensor([1, 1, 0]), self_index=torch.tensor([2, -1])
    )
    assert pos.tolist() == [[False, False, False], [True, True, False]]
    assert neg.tolist() == [[True, True, False], [False, False, True]]


def test_relation_fn_with_ignored_pairs() -> None:
    def rel(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gap = (a[:, None] - b[None, :]).abs()
        return gap <= 1, gap >= 3  # gaps of 2 are neither positive nor negative

    pos, neg = relation_masks(torch.tensor([0, 5]), torch.tensor([1, 2, 9]), relation_fn=rel)
    assert pos.tolist() == [[True, False, False], [False, False, False]]
    assert neg.tolist() == [[False, False, True], [True, True, True]]
    # self exclusion also applies to relation_fn masks, without touching the function's output
    ids = torch.arange(3)
    raw_pos, _ = rel(ids, ids)
    pos, _ = relation_masks(ids, ids, relation_fn=lambda a, b: (raw_pos, ~raw_pos), self_index=ids)
    assert not pos.diagonal().any() and raw_pos.diagonal().all()


def test_relation_errors() -> None:
    def bad(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(2, 2, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool)

    with pytest.raises(ValueError, match=r"relation_fn: expected bool pos mask of shape \(2, 3\)"):
        relation_masks(torch.arange(2), torch.arange(3), relation_fn=bad)

    def not_bool(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool)

    with pytest.raises(ValueError, match="relation_fn: expected bool pos mask"):
        relation_masks(torch.arange(2), torch.arange(3), relation_fn=not_bool)

    def overlap(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = torch.ones(2, 3, dtype=torch.bool)
        return m, m

    with pytest.raises(ValueError, match="both positive and negative"):
        relation_masks(torch.arange(2), torch.arange(3), relation_fn=overlap)
    with pytest.raises(ValueError, match=r"ref_labels: expected shape \(R,\)"):
        relation_masks(torch.arange(2), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"multi-hot shape \(R, 2\)"):
        relation_masks(torch.zeros(2, 2, dtype=torch.long), torch.arange(3))
