"""Lipschitz L2 normalisation: project onto the unit ball instead of the unit sphere.

    N(v) = v            if |v|_2 <= 1
           v / |v|_2    otherwise

Row-wise over the last dimension of ``x (..., D)``; same shape and dtype. The Jacobian is the
identity inside the ball and the usual normalisation Jacobian ``(I - v̂ v̂ᵀ) / |v|`` outside, so
``N`` is 1-Lipschitz on each side and 2-Lipschitz overall. Used by chance-constrained proxies
(Gurbuz et al.) on embeddings and proxies alike. Memory: one copy of ``x``.
"""

from __future__ import annotations

from torch import Tensor


def lipschitz_normalize(x: Tensor) -> Tensor:
    """``N(x)`` row-wise (module docstring); finite for any finite input, including zero rows."""
    norm = x.norm(dim=-1, keepdim=True)
    return x / norm.clamp_min(1.0)
