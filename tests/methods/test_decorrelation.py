"""Gradient reversal and the adversarial decorrelation of two heads."""

from __future__ import annotations

import pytest
import torch

from dmlkit.methods.decorrelation import Decorrelation
from dmlkit.methods.gradient_reversal import GradientReversal, grad_reverse


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=g, dtype=torch.float64))


def test_gradient_reversal_is_identity_forward_and_flips_the_gradient_exactly() -> None:
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, dtype=torch.float64)
    y = grad_reverse(x)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.equal(x.grad, -w)
    x.grad = None
    (grad_reverse(x, 0.5) * w).sum().backward()
    assert torch.equal(x.grad, -0.5 * w)


def test_gradient_reversal_is_a_static_autograd_function() -> None:
    assert isinstance(GradientReversal.__dict__["forward"], staticmethod)
    assert isinstance(GradientReversal.__dict__["backward"], staticmethod)
    with pytest.raises(ValueError, match="scale"):
        grad_reverse(torch.ones(2), -1.0)


def test_heads_get_the_negated_gradient_and_the_regressor_a_normal_one() -> None:
    torch.manual_seed(0)
    decorr = Decorrelation(6, 4, hidden_dim=8).double()
    source = _unit(10, 6, 1).requires_grad_(True)
    target = _unit(10, 4, 2).requires_grad_(True)
    decorr(source, target).backward()
    reversed_grads = (source.grad.clone(), target.grad.clone())
    regressor_grads = [p.grad.clone() for p in decorr.regressor.parameters()]

    # the same loss written without reversal
    source.grad = target.grad = None
    decorr.zero_grad()
    predicted = torch.nn.functional.normalize(decorr.regressor(source), dim=1)
    (-(target * predicted).pow(2).mean()).backward()
    torch.testing.assert_close(reversed_grads[0], -source.grad)
    torch.testing.assert_close(reversed_grads[1], -target.grad)
    for got, plain in zip(regressor_grads, decorr.regressor.parameters(), strict=True):
        torch.testing.assert_close(got, plain.grad)  # not reversed
        assert got.abs().sum() > 0


def test_loss_is_minus_the_mean_squared_correlation_about_one_over_d_squared() -> None:
    torch.manual_seed(0)
    dim = 128
    decorr = Decorrelation(dim, dim).double()
    with torch.no_grad():
        values = [float(decorr(_unit(256, dim, s), _unit(256, dim, s + 100))) for s in range(4)]
    assert all(v <= 0 for v in values)
    assert -sum(values) / 4 == pytest.approx(1 / dim**2, rel=0.1)


def test_explicit_value_and_default_sizes() -> None:
    decorr = Decorrelation(2, 2, hidden_dim=2).double()
    with torch.no_grad():
        for p in decorr.regressor.parameters():
            p.zero_()
        decorr.regressor[2].bias.copy_(torch.tensor([3.0, 4.0], dtype=torch.float64))
    source = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([[0.6, 0.8]], dtype=torch.float64)
    # prediction N([3, 4]) = [0.6, 0.8]; -(0.36² + 0.64²) / 2
    assert decorr(source, target).item() == pytest.approx(-(0.36**2 + 0.64**2) / 2)
    default = Decorrelation()
    sizes = [tuple(p.shape) for p in default.regressor.parameters()]
    assert sizes == [(512, 128), (512,), (128, 512), (128,)]


def test_own_optimizer_group_and_input_errors() -> None:
    decorr = Decorrelation(4, 4, hidden_dim=8, lr=1e-5, weight_decay=1e-6)
    group = decorr.optimizer_group()
    assert group["name"] == "decorrelation" and group["lr"] == 1e-5
    assert group["weight_decay"] == 1e-6 and len(group["params"]) == 4
    with pytest.raises(ValueError, match=r"expected shapes \(3, 4\) and \(3, 4\)"):
        decorr(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="finite"):
        decorr(torch.full((3, 4), float("nan")), torch.randn(3, 4))
    with pytest.raises(ValueError, match="hidden_dim"):
        Decorrelation(4, 4, hidden_dim=0)
