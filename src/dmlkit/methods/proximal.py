"""The proximal regulariser of a round: ``R(θ) = (λ/2) Σ_w |w - w̄|²`` over the given weights.

Applied as its exact gradient ``λ (w - w̄)``, added to each weight's gradient after the backward
pass (:meth:`ProximalTerm.add_gradient`), so the loss value the trainer logs stays the loss; the
AMP gradient scale multiplies the added term like every other gradient. ``λ = 0`` or no anchor
adds nothing. Memory: one copy of the weights (the anchor ``w̄``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class ProximalTerm:
    """``(λ/2) |θ - θ̄|²`` for the weights ``params`` and an anchor set by :meth:`set_anchor`."""

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        self.params = list(params)
        self.lam = 0.0
        self.anchor: list[Tensor] | None = None

    @torch.no_grad()
    def set_anchor(self, values: Sequence[Tensor], lam: float) -> None:
        """Anchor ``θ̄ = values`` (copied; one tensor per weight) with strength ``λ >= 0``."""
        if [tuple(v.shape) for v in values] != [tuple(p.shape) for p in self.params]:
            raise ValueError(
                f"values: expected one tensor per weight with shapes "
                f"{[tuple(p.shape) for p in self.params]}, got {[tuple(v.shape) for v in values]}"
            )
        if not lam >= 0:
            raise ValueError(f"lam: expected a value >= 0, got {lam}")
        pairs = zip(values, self.params, strict=True)
        self.anchor = [v.detach().to(p.device, p.dtype).clone() for v, p in pairs]
        self.lam = float(lam)

    def value(self) -> Tensor:
        """``(λ/2) Σ |w - w̄|²`` as a 0-dim tensor connected to the weights (0 without anchor)."""
        if self.anchor is None:
            return torch.zeros(())
        squares = [((p - a) ** 2).sum() for p, a in zip(self.params, self.anchor, strict=True)]
        return 0.5 * self.lam * torch.stack(squares).sum()

    @torch.no_grad()
    def add_gradient(self, scale: float = 1.0) -> None:
        """``w.grad += scale · λ (w - w̄)`` for every weight (``scale``: the AMP gradient scale)."""
        if self.anchor is None or self.lam == 0.0:
            return
        for p, a in zip(self.params, self.anchor, strict=True):
            step = (p - a).mul_(scale * self.lam)
            if p.grad is None:
                p.grad = step
            else:
                p.grad.add_(step)
