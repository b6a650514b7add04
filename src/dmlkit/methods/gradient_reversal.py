"""Gradient reversal (Ganin & Lempitsky 2015): identity forward, negated (scaled) gradient back.

    forward:  GR(x) = x                       x any shape
    backward: dL/dx = -scale * dL/dGR(x)

Written as a ``torch.autograd.Function`` with static ``forward``/``backward`` (the instance-method
form of older code is refused by current PyTorch). A module placed after ``GR`` is trained to
lower the loss as usual, while everything before ``GR`` is trained to raise it: the adversarial
setup of the decorrelation in :mod:`dmlkit.methods.decorrelation`. Memory: none beyond ``x``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class GradientReversal(torch.autograd.Function):
    """``GradientReversal.apply(x, scale)``: ``x`` forward, ``-scale * grad`` backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    """``x`` unchanged in the forward pass; its gradient is multiplied by ``-scale``."""
    if scale < 0:
        raise ValueError(f"scale: expected a factor >= 0 for the reversed gradient, got {scale}")
    result: Tensor = GradientReversal.apply(x, float(scale))
    return result
