"""core.checks: every error message, and the fast finite check's exactness."""

from __future__ import annotations

import pytest
import torch

from dmlkit.core import check_embeddings, check_labels, check_positive, check_same_dim


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([[1.0]], TypeError, "emb: expected a torch.Tensor of shape"),
        (torch.ones(3), ValueError, r"emb: expected shape \(B, D\) with 2 dims, got \(3,\)"),
        (torch.ones(2, 2, dtype=torch.long), TypeError, "floating-point tensor, got dtype"),
        (torch.ones(0, 4), ValueError, "empty batch"),
        (torch.ones(3, 0), ValueError, "D >= 1"),
        (torch.tensor([[1.0, float("nan")], [1.0, 1.0]]), ValueError, "NaN/Inf in 1 of 2 rows"),
        (torch.tensor([[float("inf")], [-float("inf")], [0.0]]), ValueError, "in 2 of 3 rows"),
    ],
)
def test_check_embeddings_errors(value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_embeddings(value, "emb")


def test_check_embeddings_accepts_finite_values_whose_sum_overflows() -> None:
    big = torch.full((4, 3), 3e38)  # finite, but the sum is inf in float32
    assert check_embeddings(big) is big
    half = torch.full((300, 300), 60000.0, dtype=torch.float16)
    assert check_embeddings(half) is half


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([0, 1], TypeError, "expected a torch.Tensor"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "expected integer"),
        (torch.zeros(3, 2, 2, dtype=torch.long), ValueError, "multi-hot"),
        (torch.arange(4), ValueError, "expected 3 rows"),
        (torch.tensor([[0, 2], [1, 0], [1, 1]]), ValueError, "only 0 and 1"),
        (
            torch.tensor([[4], [0], [4]]),
            ValueError,
            r"shape \(3, 1\) is ambiguous: class ids must have shape \(3,\) \(use labels.view",
        ),
        (
            torch.tensor([[1], [0], [1]]),
            ValueError,
            "multi-hot labels over one class must be a bool",
        ),
    ],
)
def test_check_labels_errors(value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_labels(value, 3, "labels")


def test_check_labels_accepts_ids_bool_and_multi_hot() -> None:
    accepted = (
        torch.arange(3),
        torch.tensor([[True, False]] * 3),
        torch.tensor([[1, 0]] * 3),
        torch.tensor([[True], [False], [True]]),  # multi-hot over one class, said by bool
    )
    for labels in accepted:
        assert check_labels(labels, 3) is labels


def test_check_same_dim_and_device() -> None:
    with pytest.raises(ValueError, match="ref_emb: expected embedding dim D=3"):
        check_same_dim(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="ref_emb: expected device cpu like emb, got meta"):
        check_same_dim(torch.ones(2, 3), torch.ones(2, 3, device="meta"))
    check_same_dim(torch.ones(2, 3), torch.ones(5, 3))


def test_check_positive() -> None:
    assert check_positive(0.0, "m", allow_zero=True) == 0.0
    assert check_positive(2, "m") == 2.0
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="margin: expected a finite value > 0"):
            check_positive(bad, "margin")
    with pytest.raises(ValueError, match="margin: expected a finite value >= 0"):
        check_positive(-0.1, "margin", allow_zero=True)
