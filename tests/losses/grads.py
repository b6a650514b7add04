"""The value and input gradient of a loss, the pair every parity test compares."""

from __future__ import annotations

from collections.abc import Callable

import torch


def value_and_grad(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fn(x), d fn / d x)`` on a fresh leaf copy of ``x``; the value detached."""
    x = x.clone().requires_grad_(True)
    value = fn(x)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad
