"""Row norms that neither overflow nor underflow: ``|x_i|_p`` for ``x (N, D)`` -> ``(N,)``.

``sqrt(Σ x²)`` overflows in float32 once entries pass about 1e19 and loses tiny rows to zero
below about 1e-19, although the norm itself fits the dtype. Rows whose largest entry leaves
``[1e-15, 1e15]`` are divided by that entry first (a constant for autograd, so the gradient is
exactly that of ``|x|_p``) and multiplied back. An all-zero row has norm 0 and gradient 0 (the
subgradient PyTorch gives). Memory: O(N D).
"""

from __future__ import annotations

import torch
from torch import Tensor

_SAFE_ENTRY = (1e-15, 1e15)


def row_norms(x: Tensor, p: float = 2.0) -> Tensor:
    """``|x_i|_p`` for every row of ``x (N, D)``, ``(N,)``, in ``x``'s dtype (module docstring)."""
    top = x.detach().abs().amax(dim=1, keepdim=True)
    low, high = _SAFE_ENTRY
    if bool(((top >= low) & (top <= high) | (top == 0)).all()):
        return torch.linalg.vector_norm(x, ord=p, dim=1)
    top = top.clamp_min(torch.finfo(x.dtype).tiny)
    return torch.linalg.vector_norm(x / top, ord=p, dim=1) * top.squeeze(1)
