"""VICReg (Bardes, Ponce, LeCun 2022): variance-invariance-covariance regularisation of two views.

For views ``Z, Z' (B, D)`` of the same ``B`` items::

    L = λ s(Z, Z') + μ [v(Z) + v(Z')] / 2 + ν [c(Z) + c(Z')]
    s(Z, Z') = 1/(B D) Σ_i |z_i - z'_i|²                      (invariance: mean squared error)
    v(Z)     = 1/D Σ_d [γ - sqrt(Var(z_·d) + ε)]_+            (variance hinge, unbiased Var)
    c(Z)     = 1/D Σ_{d≠e} C(Z)_de²,  C(Z) = (Z - Z̄)ᵀ(Z - Z̄) / (B - 1)   (covariance)

The ``/ 2`` on the variance term follows the official code (the paper's equation omits it);
pytorch-metric-learning's ``VICRegLoss`` computes the same, with ``invariance_lambda``,
``variance_mu``, ``covariance_v``. Defaults as both: ``λ = μ = 25``, ``ν = 1``, ``ε = 1e-4``,
``γ = 1`` (not settable in PML). ``B >= 2`` (the variance needs it). Computed in float32 (float64
for float64 inputs), also under ``torch.autocast``. Memory O(B D + D²).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.core.checks import check_positive
from dmlkit.losses.registry import LOSSES
from dmlkit.losses.views import ViewsLoss, check_views


def _variance_hinge(z: Tensor, target: float, eps: float) -> Tensor:
    return torch.relu(target - torch.sqrt(z.var(dim=0) + eps)).mean()


def _off_diagonal_covariance(z: Tensor) -> Tensor:
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (z.shape[0] - 1)
    off_diagonal = 1.0 - torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    return (cov.pow(2) * off_diagonal).sum() / z.shape[1]


class VICRegLoss(ViewsLoss):
    """VICReg: ``forward(emb (B, D), ref_emb (B, D)) -> 0-dim loss``; row ``i`` of both views is
    item ``i``; no labels.

    ``L = λ mean|z - z'|² + μ [v(Z) + v(Z')] / 2 + ν [c(Z) + c(Z')]``, ``v`` the mean hinge
    ``[γ - sqrt(Var + ε)]_+`` over dimensions, ``c`` the sum of squared off-diagonal covariances
    over ``D`` (details in the module docstring). Defaults as the paper's code and
    pytorch-metric-learning: ``invariance = variance = 25``, ``covariance = 1``, ``eps = 1e-4``,
    ``target_std = 1``. Non-finite results (embeddings whose squares overflow the compute dtype)
    raise ``ValueError``. Memory O(B D + D²).
    """

    def __init__(
        self,
        invariance: float = 25.0,
        variance: float = 25.0,
        covariance: float = 1.0,
        eps: float = 1e-4,
        target_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.invariance = check_positive(invariance, "invariance", allow_zero=True)
        self.variance = check_positive(variance, "variance", allow_zero=True)
        self.covariance = check_positive(covariance, "covariance", allow_zero=True)
        self.eps = check_positive(eps, "eps")
        self.target_std = check_positive(target_std, "target_std")

    def forward(self, emb: Tensor, ref_emb: Tensor) -> Tensor:
        z, z_ref = check_views([emb, ref_emb], ["emb", "ref_emb"])
        if z.shape[0] < 2:
            raise ValueError(
                f"emb: expected at least 2 rows (VICReg's variance and covariance need them), "
                f"got {z.shape[0]}"
            )
        dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=z.device.type, enabled=False):
            z, z_ref = z.to(dtype), z_ref.to(dtype)
            invariance = (z - z_ref).pow(2).mean()
            variance = _variance_hinge(z, self.target_std, self.eps)
            variance = variance + _variance_hinge(z_ref, self.target_std, self.eps)
            covariance = _off_diagonal_covariance(z) + _off_diagonal_covariance(z_ref)
            loss = (
                self.invariance * invariance
                + self.variance * variance / 2.0
                + self.covariance * covariance
            )
        if not bool(torch.isfinite(loss)):
            scale = max(float(z.detach().abs().amax()), float(z_ref.detach().abs().amax()))
            raise ValueError(
                f"emb, ref_emb: expected embeddings whose squared products fit in {dtype}, got "
                f"entries up to {scale:.3g} in magnitude and a non-finite loss; normalise or "
                "rescale the embeddings"
            )
        return loss

    def extra_repr(self) -> str:
        return (
            f"invariance={self.invariance}, variance={self.variance}, "
            f"covariance={self.covariance}, eps={self.eps}, target_std={self.target_std}"
        )


LOSSES.register("vicreg", family="self-supervised", source="Bardes et al. 2022, VICReg")(VICRegLoss)
