"""VICReg: loop reference, parity with pytorch-metric-learning, gradcheck, edge cases and errors."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from dmlkit.losses import VICRegLoss, create


def reference(
    z: torch.Tensor,
    zr: torch.Tensor,
    lam: float,
    mu: float,
    nu: float,
    eps: float,
    gamma: float = 1.0,
) -> torch.Tensor:
    """Loops over items and dimensions."""
    b, d = z.shape
    inv = sum((z[i, k] - zr[i, k]) ** 2 for i in range(b) for k in range(d)) / (b * d)
    var = torch.zeros((), dtype=torch.float64)
    cov = torch.zeros((), dtype=torch.float64)
    for view in (z, zr):
        means = [sum(view[i, k] for i in range(b)) / b for k in range(d)]
        for k in range(d):
            v = sum((view[i, k] - means[k]) ** 2 for i in range(b)) / (b - 1)
            var = var + torch.clamp(gamma - torch.sqrt(v + eps), min=0.0) / d
            for e in range(d):
                if e != k:
                    c = sum((view[i, k] - means[k]) * (view[i, e] - means[e]) for i in range(b)) / (
                        b - 1
                    )
                    cov = cov + c**2 / d
    return lam * inv + mu * var / 2 + nu * cov


def _views(seed: int, b: int = 6, d: int = 4, spread: float = 0.4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, d, generator=g, dtype=torch.float64)
    return z, z + spread * torch.randn(b, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_the_loop_reference(seed: int) -> None:
    z, zr = _views(seed)
    zr = zr * 0.5  # some dimensions below the target deviation, so the hinge is active
    expected = reference(z, zr, 25.0, 25.0, 1.0, 1e-4)
    torch.testing.assert_close(create("vicreg")(z, zr), expected)
    expected = reference(z, zr, 2.0, 3.0, 0.5, 1e-3, gamma=1.5)
    loss = VICRegLoss(invariance=2.0, variance=3.0, covariance=0.5, eps=1e-3, target_std=1.5)
    torch.testing.assert_close(loss(z, zr), expected)


@pytest.mark.parametrize(("b", "d"), [(16, 6), (5, 1), (2, 3), (32, 12)])
@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 5.0, 0.2)])
def test_matches_pml(b: int, d: int, weights: tuple[float, float, float]) -> None:
    z, zr = _views(b * d, b, d, spread=0.7)
    z = z * 0.6  # active variance hinges on both sides
    lam, mu, nu = weights
    zs = (z.clone().requires_grad_(True), zr.clone().requires_grad_(True))
    ours = create("vicreg", invariance=lam, variance=mu, covariance=nu)(*zs)
    ours_grad = torch.autograd.grad(ours, zs)
    zt = (z.clone().requires_grad_(True), zr.clone().requires_grad_(True))
    theirs = pml_losses.VICRegLoss(lam, mu, nu)(zt[0], ref_emb=zt[1])
    theirs_grad = torch.autograd.grad(theirs, zt)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-10, atol=1e-12)


def test_gradcheck() -> None:
    z, zr = _views(3, b=5, d=3)
    loss = create("vicreg", invariance=2.0, variance=3.0)
    assert torch.autograd.gradcheck(loss, (z.requires_grad_(True), (0.5 * zr).requires_grad_(True)))


def test_collapsed_views_pay_the_full_variance_hinge() -> None:
    # every item the same vector in both views: no invariance or covariance, variance 1 - sqrt(ε)
    z = torch.ones(4, 3, dtype=torch.float64)
    value = create("vicreg")(z, z.clone())
    torch.testing.assert_close(value, torch.tensor(25.0 * (1 - 1e-2), dtype=torch.float64))


def test_well_spread_identical_views_cost_only_covariance() -> None:
    # orthogonal, centred columns with deviation above 1: only a zero covariance remains
    z = torch.tensor([[2.0, 2.0], [-2.0, 2.0], [2.0, -2.0], [-2.0, -2.0]], dtype=torch.float64)
    assert create("vicreg")(z, z.clone()).item() == 0.0


def test_autocast_computes_in_float32() -> None:
    z, zr = (v.float() for v in _views(4, b=8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = create("vicreg")(z, zr)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, create("vicreg")(z, zr))


@pytest.mark.parametrize(
    ("emb", "ref", "message"),
    [
        (torch.randn(1, 3), torch.randn(1, 3), "at least 2 rows"),
        (torch.randn(4, 3), torch.arange(4), "labels"),
        (torch.randn(4, 3), torch.randn(5, 3), "shape of emb"),
        (torch.randn(4, 3), torch.randn(4, 2), "shape of emb"),
        (torch.full((4, 3), float("nan")), torch.randn(4, 3), "finite"),
        (torch.randn(4, 3) * 1e30, torch.randn(4, 3), "rescale"),
    ],
)
def test_bad_views_are_clear_errors(emb: torch.Tensor, ref: torch.Tensor, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message) as info:
        create("vicreg")(emb, ref)
    assert "expected" in str(info.value)


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="eps"):
        VICRegLoss(eps=0.0)
    with pytest.raises(ValueError, match="invariance"):
        VICRegLoss(invariance=-1.0)
