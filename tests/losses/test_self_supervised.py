"""The self-supervised wrapper: item indices as labels, parity with pytorch-metric-learning, the
docstring example, refusals."""

from __future__ import annotations

import doctest

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from dmlkit.losses import SelfSupervisedLoss, create
from dmlkit.losses import self_supervised as module
from dmlkit.losses.self_supervised import self_supervised


def _views(count: int, seed: int = 0, b: int = 6, d: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, d, generator=g, dtype=torch.float64)
    return [base + 0.5 * torch.randn(b, d, generator=g, dtype=torch.float64) for _ in range(count)]


def test_docstring_example_runs() -> None:
    failures, attempted = doctest.testmod(module, raise_on_error=False)
    assert attempted >= 5 and failures == 0


@pytest.mark.parametrize("count", [2, 3])
def test_symmetric_pools_the_views_labelled_by_item(count: int) -> None:
    views = _views(count)
    inner = create("smooth_ap", temperature=0.1)
    items = torch.arange(6).repeat(count)
    expected = inner(torch.cat(views), items)
    torch.testing.assert_close(SelfSupervisedLoss(inner)(*views), expected)


@pytest.mark.parametrize("count", [2, 3])
def test_asymmetric_ranks_the_first_view_against_the_others(count: int) -> None:
    views = _views(count, seed=1)
    inner = create("pnp", temperature=0.1)
    items = torch.arange(6)
    refs = torch.cat(views[1:])
    expected = inner(views[0], items, refs, items.repeat(count - 1))
    torch.testing.assert_close(SelfSupervisedLoss(inner, symmetric=False)(*views), expected)


@pytest.mark.parametrize("symmetric", [True, False])
def test_matches_pml(symmetric: bool) -> None:
    a, b = _views(2, seed=2, b=10)
    ours_in = (a.clone().requires_grad_(True), b.clone().requires_grad_(True))
    ours = self_supervised(
        "contrastive", symmetric=symmetric, loss_options={"normalize": "sides_nonzero"}
    )(*ours_in)
    ours_grad = torch.autograd.grad(ours, ours_in)
    pml_in = (a.clone().requires_grad_(True), b.clone().requires_grad_(True))
    inner = pml_losses.ContrastiveLoss(1.0, 0.5, distance=pml_distances.CosineSimilarity())
    theirs = pml_losses.SelfSupervisedLoss(inner, symmetric=symmetric)(*pml_in)
    theirs_grad = torch.autograd.grad(theirs, pml_in)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-10, atol=1e-12)


def test_views_of_other_items_are_negatives() -> None:
    # identical views of well-separated items: every positive is perfect, so Smooth-AP is 0
    eye = torch.eye(4, dtype=torch.float64)
    assert SelfSupervisedLoss(create("smooth_ap"))(eye, eye.clone()).item() == pytest.approx(0.0)


def test_refusals_are_clear() -> None:
    with pytest.raises(TypeError, match="already takes views"):
        SelfSupervisedLoss(create("vicreg"))
    with pytest.raises(TypeError, match="ref_emb"):
        SelfSupervisedLoss(torch.nn.MSELoss(), symmetric=False)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        SelfSupervisedLoss("ms")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss_options"):
        self_supervised(create("ms"), loss_options={"beta": 2.0})
    wrapped = SelfSupervisedLoss(create("ms"))
    with pytest.raises(ValueError, match="shape of emb"):
        wrapped(torch.randn(4, 3), torch.randn(4, 3), torch.randn(3, 3))
    with pytest.raises(TypeError, match="labels"):
        wrapped(torch.randn(4, 3), torch.arange(4))
