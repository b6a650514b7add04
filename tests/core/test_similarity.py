"""core.similarity: every kind against its formula, float32 under autocast, the self-Gram backward."""

from __future__ import annotations

import math

import pytest
import torch

from dmlkit.core import SIMILARITIES, Similarity, similarity_matrix


def test_similarity_kinds_match_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64)
    sims = {kind: similarity_matrix(x, y, kind) for kind in SIMILARITIES}
    for i in range(5):
        for j in range(4):
            d = x[i] - y[j]
            sq = float(d @ d)
            cos = float(x[i] @ y[j] / (x[i].norm() * y[j].norm()))
            assert sims["cosine"][i, j].item() == pytest.approx(cos, rel=1e-12)
            assert sims["dot"][i, j].item() == pytest.approx(float(x[i] @ y[j]), rel=1e-12)
            assert sims["neg_sq_euclidean"][i, j].item() == pytest.approx(-sq, rel=1e-12)
            assert sims["neg_euclidean"][i, j].item() == pytest.approx(-math.sqrt(sq), rel=1e-12)


@pytest.mark.parametrize("kind", SIMILARITIES)
def test_self_similarity_equals_a_copy_in_value_and_gradient(kind: str) -> None:
    # y is x takes the one-product Gram backward; a copy takes autograd's two products
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 6, generator=g, dtype=torch.float64)
    same = similarity_matrix(x, x, kind)
    copy = similarity_matrix(x, x.clone(), kind)
    torch.testing.assert_close(same, copy)
    (g_same,) = torch.autograd.grad((same * weights).sum(), x)
    (g_copy,) = torch.autograd.grad((copy * weights).sum(), x)
    torch.testing.assert_close(g_same, g_copy)


@pytest.mark.parametrize("kind", SIMILARITIES)
def test_self_similarity_gradcheck(kind: str) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(5, 5, generator=g, dtype=torch.float64)
    weights.fill_diagonal_(0.0)  # neg_euclidean has a kink at d = 0 on the diagonal
    assert torch.autograd.gradcheck(lambda e: (similarity_matrix(e, e, kind) * weights).sum(), (x,))


@pytest.mark.parametrize("kind", SIMILARITIES)
def test_float32_under_autocast_and_finite_grad_at_duplicates(kind: str) -> None:
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = Similarity(kind)(x, x)
        s_ref = Similarity(kind)(x, x.detach().clone())
    assert s.dtype == torch.float32 and s_ref.dtype == torch.float32
    (s.sum() + s_ref.sum()).backward()
    assert torch.isfinite(x.grad).all()
    # backward inside an autocast region keeps float32 gradients
    x.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        Similarity(kind)(x, x).sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()


def test_float64_stays_float64_and_unknown_kinds_are_refused() -> None:
    x = torch.randn(3, 2, dtype=torch.float64)
    assert similarity_matrix(x, x).dtype == torch.float64
    assert similarity_matrix(x.half(), x.half()).dtype == torch.float32
    with pytest.raises(ValueError, match="similarity: expected one of"):
        Similarity("manhattan")
    with pytest.raises(ValueError, match="similarity: expected one of"):
        similarity_matrix(x, x, "manhattan")
    assert "cosine" in repr(Similarity())


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20, 1e30])
def test_cosine_keeps_the_direction_of_tiny_and_huge_rows(scale: float) -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 7, dtype=torch.float64)
    expected = similarity_matrix(x, x, "cosine")
    scaled = (x * scale).float().requires_grad_(True)
    sim = similarity_matrix(scaled, scaled, "cosine")
    torch.testing.assert_close(sim.double(), expected, atol=1e-6, rtol=0)
    reference = x.clone().requires_grad_(True)
    weights = torch.randn(5, 5, dtype=torch.float64)
    (sim.double() * weights).sum().backward()
    (similarity_matrix(reference, reference, "cosine") * weights).sum().backward()
    assert scaled.grad is not None and reference.grad is not None
    # x/|x| is scale invariant, so the gradient scales by 1/scale
    torch.testing.assert_close(scaled.grad.double() * scale, reference.grad, atol=1e-5, rtol=1e-4)
    one_tiny_row = torch.cat([x[:4].float(), scaled[4:].detach()])
    torch.testing.assert_close(
        similarity_matrix(one_tiny_row, one_tiny_row, "cosine").double(),
        expected,
        atol=1e-6,
        rtol=0,
    )


def test_cosine_refuses_rows_without_direction() -> None:
    x = torch.randn(4, 3)
    x[2] = 0.0
    with pytest.raises(
        ValueError, match=r"emb: expected rows with a direction.*1 all-zero row\(s\) \(rows 2\)"
    ):
        similarity_matrix(x, x, "cosine")
    with pytest.raises(ValueError, match=r"ref_emb: .*rows 2"):
        similarity_matrix(torch.randn(2, 3), x, "cosine")
