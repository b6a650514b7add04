"""The proximal term (λ/2)|θ - θ̄|²: zero at the anchor, gradient λ(θ - θ̄), AMP scale."""

from __future__ import annotations

import pytest
import torch

from dmlkit.methods import ProximalTerm


def weights() -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(3, 4, generator=g, dtype=torch.float64)),
            torch.nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))]  # fmt: skip


def test_zero_at_the_anchor_and_nothing_without_one() -> None:
    params = weights()
    term = ProximalTerm(params)
    assert float(term.value().detach()) == 0.0
    term.add_gradient()
    assert all(p.grad is None for p in params)
    term.set_anchor([p.detach() for p in params], 2e-4)
    assert float(term.value().detach()) == 0.0
    term.add_gradient()
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in params)


def test_gradient_is_lambda_times_the_offset_and_matches_autograd() -> None:
    params = weights()
    anchor = [p.detach() + 0.5 * torch.randn_like(p) for p in params]
    term = ProximalTerm(params)
    term.set_anchor(anchor, 0.3)
    value = term.value()
    expected = 0.15 * sum(
        float(((p.detach() - a) ** 2).sum()) for p, a in zip(params, anchor, strict=True)
    )
    assert float(value.detach()) == pytest.approx(expected, rel=1e-12)
    auto = torch.autograd.grad(value, params)
    for p in params:
        p.grad = torch.ones_like(p)
    term.add_gradient(scale=8.0)
    for p, a, g in zip(params, anchor, auto, strict=True):
        torch.testing.assert_close(g, 0.3 * (p.detach() - a), rtol=1e-12, atol=0)
        torch.testing.assert_close(p.grad, 1.0 + 8.0 * 0.3 * (p.detach() - a), rtol=1e-12, atol=0)


def test_anchor_is_copied_and_checked() -> None:
    params = weights()
    anchor = [p.detach().clone() for p in params]
    term = ProximalTerm(params)
    term.set_anchor(anchor, 1.0)
    anchor[0].add_(1.0)
    assert float(term.value().detach()) == 0.0
    with pytest.raises(ValueError, match=r"values: expected one tensor per weight with shapes"):
        term.set_anchor(anchor[:1], 1.0)
    with pytest.raises(ValueError, match="lam: expected a value >= 0"):
        term.set_anchor(anchor, -1.0)
