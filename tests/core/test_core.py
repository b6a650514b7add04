"""core/: similarity kinds, relation masks, input checks, registry, distance weighting."""

from __future__ import annotations

import math

import pytest
import torch

from dmlkit.core import (
    SIMILARITIES,
    Registry,
    Similarity,
    check_embeddings,
    check_labels,
    check_positive,
    check_same_dim,
    distance_weighted_probs,
    inverse_sphere_log_weights,
    relation_masks,
    similarity_matrix,
)


def test_similarity_kinds_match_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64)
    for i in range(5):
        for j in range(4):
            d = x[i] - y[j]
            cos = float(x[i] @ y[j] / (x[i].norm() * y[j].norm()))
            assert similarity_matrix(x, y, "cosine")[i, j].item() == pytest.approx(cos)
            assert similarity_matrix(x, y, "dot")[i, j].item() == pytest.approx(float(x[i] @ y[j]))
            sq = float(d @ d)
            assert similarity_matrix(x, y, "neg_sq_euclidean")[i, j].item() == pytest.approx(-sq)
            assert similarity_matrix(x, y, "neg_euclidean")[i, j].item() == pytest.approx(
                -math.sqrt(sq)
            )
    # the self path (y is x) agrees with passing a copy
    for kind in SIMILARITIES:
        torch.testing.assert_close(
            similarity_matrix(x, x, kind), similarity_matrix(x, x.clone(), kind)
        )


@pytest.mark.parametrize("kind", SIMILARITIES)
def test_similarity_float32_under_autocast_and_finite_grad_at_duplicates(kind: str) -> None:
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = Similarity(kind)(x, x)
    assert s.dtype == torch.float32
    s.sum().backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="similarity: expected one of"):
        Similarity("manhattan")


def test_relation_masks_int_multihot_fn_and_self_index() -> None:
    y = torch.tensor([0, 0, 1])
    pos, neg = relation_masks(y, y, self_index=torch.arange(3))
    assert pos.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert neg.tolist() == [[False, False, True], [False, False, True], [True, True, False]]
    mh = torch.tensor([[1, 0], [1, 1], [0, 1]])
    pos, neg = relation_masks(mh, mh)
    assert pos.tolist() == [[True, True, False], [True, True, True], [False, True, True]]
    assert torch.equal(neg, ~pos)
    # memory-bank style self index: row 0 is column 2, row 1 has no copy
    pos, _ = relation_masks(
        torch.tensor([0, 1]), torch.tensor([1, 1, 0]), self_index=torch.tensor([2, -1])
    )
    assert pos.tolist() == [[False, False, False], [True, True, False]]

    def rel(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        close = (a[:, None] - b[None, :]).abs() <= 1
        return close, (a[:, None] - b[None, :]).abs() >= 3

    pos, neg = relation_masks(torch.tensor([0, 5]), torch.tensor([1, 2, 9]), relation_fn=rel)
    assert pos.tolist() == [[True, False, False], [False, False, False]]
    assert neg.tolist() == [[False, False, True], [True, True, True]]


def test_relation_fn_and_label_shape_errors() -> None:
    def bad(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(2, 2, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool)

    with pytest.raises(ValueError, match="relation_fn: expected bool pos mask of shape"):
        relation_masks(torch.arange(2), torch.arange(3), relation_fn=bad)

    def overlap(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = torch.ones(2, 3, dtype=torch.bool)
        return m, m

    with pytest.raises(ValueError, match="both positive and negative"):
        relation_masks(torch.arange(2), torch.arange(3), relation_fn=overlap)
    with pytest.raises(ValueError, match="ref_labels: expected shape"):
        relation_masks(torch.arange(2), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="multi-hot shape"):
        relation_masks(torch.zeros(2, 2, dtype=torch.long), torch.arange(3))


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([[1.0]], TypeError, "expected a torch.Tensor"),
        (torch.ones(3), ValueError, r"expected shape \(B, D\)"),
        (torch.ones(2, 2, dtype=torch.long), TypeError, "floating-point"),
        (torch.ones(0, 4), ValueError, "empty batch"),
        (torch.ones(3, 0), ValueError, "D >= 1"),
        (torch.tensor([[1.0, float("nan")], [1.0, 1.0]]), ValueError, "NaN/Inf in 1 of 2 rows"),
    ],
)
def test_check_embeddings_errors(value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_embeddings(value, "emb")


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([0, 1], TypeError, "expected a torch.Tensor"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "integer"),
        (torch.zeros(3, 2, 2, dtype=torch.long), ValueError, "multi-hot"),
        (torch.arange(4), ValueError, "expected 3 rows"),
        (torch.tensor([[0, 2], [1, 0], [1, 1]]), ValueError, "only 0 and 1"),
    ],
)
def test_check_labels_errors(value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_labels(value, 3, "labels")


def test_check_labels_accepts_ids_bool_and_multi_hot() -> None:
    check_labels(torch.arange(3), 3)
    check_labels(torch.tensor([[True, False]] * 3), 3)
    check_labels(torch.tensor([[1, 0]] * 3), 3)


def test_check_same_dim_and_positive() -> None:
    with pytest.raises(ValueError, match="D=3"):
        check_same_dim(torch.ones(2, 3), torch.ones(2, 4))
    assert check_positive(0.0, "m", allow_zero=True) == 0.0
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="margin: expected a finite value > 0"):
            check_positive(bad, "margin")


def test_registry() -> None:
    reg: Registry[int] = Registry("widget")

    @reg.register("one")
    def one(plus: int = 0) -> int:
        return 1 + plus

    assert reg.create("one", plus=2) == 3 and "one" in reg and reg.names() == ["one"]
    with pytest.raises(KeyError, match="already registered"):
        reg.register("one")(one)
    with pytest.raises(KeyError, match="unknown widget 'two'; registered: one"):
        reg.create("two")


def test_distance_weights_rows_normalised_cutoffs_and_stable() -> None:
    d = torch.tensor([[0.1, 0.3, 0.5, 1.0, 1.9, 2.0, 2.5]], dtype=torch.float64)
    cand = torch.ones_like(d, dtype=torch.bool)
    for dim in (2, 3, 16, 128, 1024):
        p = distance_weighted_probs(d, cand, dim)
        assert torch.isfinite(p).all() and p.sum().item() == pytest.approx(1.0)
        # everything at or below the lower cutoff is equiprobable
        assert p[0, 0].item() == pytest.approx(p[0, 2].item()) == pytest.approx(p[0, 1].item())
    p = distance_weighted_probs(d, cand, 128, upper_cutoff=1.4)
    assert (p[0, 4:] == 0).all() and p.sum().item() == pytest.approx(1.0)
    # rows without candidates stay zero, never NaN
    empty = distance_weighted_probs(d, torch.zeros_like(cand), 128)
    assert torch.equal(empty, torch.zeros_like(empty))
    # log-weight formula at one point, dimension 10
    lw = inverse_sphere_log_weights(torch.tensor([1.0], dtype=torch.float64), 10)
    assert lw.item() == pytest.approx(-8 * math.log(1.0) - 3.5 * math.log(1 - 0.25))
    with pytest.raises(ValueError, match="dimension >= 2"):
        inverse_sphere_log_weights(d, 1)
