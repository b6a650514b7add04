"""Analytic inverse-sphere weights for distance-weighted sampling (Wu et al. 2017).

For points uniform on the unit sphere S^{D-1}, pairwise distances d in (0, 2) have density
``q(d) ∝ d^{D-2} (1 - d^2/4)^{(D-3)/2}``. Distance-weighted sampling draws a candidate with
probability ∝ 1/q(d), i.e. with log-weight

    log w(d) = (2 - D) log d - ((D - 3)/2) log(1 - d^2/4),

evaluated at ``d <- max(d, lower_cutoff)`` (default 0.5) and, optionally, with ``w = 0`` for
``d >= upper_cutoff`` (Wu et al. use 1.4; the DiVA code disables it). Everything is computed in log
space with max-subtraction, so it is finite at any dimension; ``d`` is also clamped below 2 so that
``log(1 - d^2/4)`` stays finite for duplicate-free antipodal pairs.

Shapes: ``dist (B, R)``, ``candidates (B, R)`` bool -> probabilities ``(B, R)`` whose rows sum to 1
over candidates (rows with no candidate are all zero). Memory: O(B R).
"""

from __future__ import annotations

import torch
from torch import Tensor

_D_MAX = 2.0 - 1e-4


def inverse_sphere_log_weights(dist: Tensor, dim: int, lower_cutoff: float = 0.5) -> Tensor:
    """Return ``log w(d) (B, R)`` for distances ``dist`` in dimension ``dim >= 2``."""
    if dim < 2:
        raise ValueError(f"dim: expected an embedding dimension >= 2, got {dim}")
    d = dist.to(torch.float64 if dist.dtype == torch.float64 else torch.float32)
    d = d.clamp(min=lower_cutoff, max=_D_MAX)
    return (2.0 - dim) * torch.log(d) - ((dim - 3) / 2.0) * torch.log1p(-0.25 * d * d)


def distance_weighted_probs(
    dist: Tensor,
    candidates: Tensor,
    dim: int,
    lower_cutoff: float = 0.5,
    upper_cutoff: float | None = None,
) -> Tensor:
    """Sampling probabilities ∝ 1/q(d) over ``candidates`` (bool (B, R)); zero rows stay zero."""
    logw = inverse_sphere_log_weights(dist, dim, lower_cutoff)
    allowed = candidates.clone()
    if upper_cutoff is not None:
        allowed &= dist < upper_cutoff
    logw = logw.masked_fill(~allowed, float("-inf"))
    row_max = logw.amax(dim=1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    w = torch.exp(logw - row_max)
    total = w.sum(dim=1, keepdim=True)
    return torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), w)
