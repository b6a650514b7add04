"""Uncertainty sets of distributionally robust pair losses (Qi et al. 2020).

A robust loss over M pair losses ``l (M,)`` is ``F(l) = max_{p ∈ U} <p, l> - r(p)`` with ``U`` a
subset of the probability simplex and ``r`` a regulariser. By Danskin's theorem ``dF/dl = p*``, the
maximiser: the weight every pair gets. Each set below computes ``F`` in closed form (or by a 1-D
search) and lets autograd return exactly ``p*``. All are permutation invariant and shift
equivariant, ``F(l + c) = F(l) + c``, and lie between ``mean(l)`` and ``max(l)``.

=====================  ==============================================  ==============================
set                    F(l)                                            p*
=====================  ==============================================  ==============================
``Uniform()``          mean(l)  (U = {1/M}, no robustness)               1/M on every pair
``TopK(k)``            mean of the k largest losses                    1/k on them (CVaR at k/M)
                       (U = {p ∈ Δ, p_i <= 1/k})
``KLPenalty(t)``       t log mean exp(l / t)  (r = t KL(p || 1/M))     softmax(l / t)
``KLBall(rho)``        min_{t>0} t log mean exp(l/t) + t rho           softmax(l / t*)
                       (U = {KL(p || 1/M) <= rho})
``ChiSquarePenalty``   <p*, l> - (lam M / 2) |p* - 1/M|^2               projection of 1/M + l/(lam M)
(lam)                  (r = lam/2 Σ (M p_i - 1)^2 / M)                 onto the simplex
=====================  ==============================================  ==============================

Memory O(M); time O(M log M) at most (a sort or a top-k).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from dmlkit.core.checks import check_positive


class UncertaintySet(nn.Module):
    """Base class: ``forward(l (M,)) -> F(l)`` (0-dim); M = 0 gives 0."""

    def forward(self, losses: Tensor) -> Tensor:
        if losses.numel() == 0:
            return losses.sum()
        return self.value(losses)

    def value(self, losses: Tensor) -> Tensor:
        raise NotImplementedError  # pragma: no cover - interface


def clamp_k(k: int, available: int, name: str = "k") -> int:
    """``min(k, available)``, warning when ``k`` asks for more pairs than the batch has."""
    if k > available:
        warnings.warn(
            f"{name}={k} exceeds the {available} pairs available; using all of them",
            UserWarning,
            stacklevel=3,
        )
        return available
    return k


class Uniform(UncertaintySet):
    """``U = {(1/M, ..., 1/M)}``: the plain mean of the pair losses, every pair weighted equally
    whatever its loss. The non-robust baseline the DRO sets are compared with."""

    def value(self, losses: Tensor) -> Tensor:
        return losses.mean()


class TopK(UncertaintySet):
    """``U = {p ∈ Δ_M : p_i <= 1/k}``: the mean of the ``k`` largest pair losses (``k`` unique
    pairs). ``k = 1`` is the hardest pair, ``k = M`` the plain mean. ``k`` larger than ``M`` is
    clamped with a warning."""

    def __init__(self, k: int) -> None:
        super().__init__()
        if int(k) < 1:
            raise ValueError(f"k: expected a number of pairs >= 1, got {k}")
        self.k = int(k)

    def value(self, losses: Tensor) -> Tensor:
        k = clamp_k(self.k, losses.numel())
        return torch.topk(losses, k, sorted=False).values.mean()

    def extra_repr(self) -> str:
        return f"k={self.k}"


class KLPenalty(UncertaintySet):
    """``r(p) = t KL(p || 1/M)``: ``F = t (logsumexp(l / t) - log M)``, stable for any ``t > 0``
    (max-subtracted, also at t = 1e-4 in float32). ``t -> 0`` gives the max, ``t -> inf`` the mean."""

    def __init__(self, t: float = 0.1) -> None:
        super().__init__()
        self.t = check_positive(t, "t")

    def value(self, losses: Tensor) -> Tensor:
        return self.t * (torch.logsumexp(losses / self.t, dim=0) - math.log(losses.numel()))

    def extra_repr(self) -> str:
        return f"t={self.t}"


class KLBall(UncertaintySet):
    """``U = {p : KL(p || 1/M) <= rho}``. The dual ``min_{t>0} t log mean exp(l/t) + t rho`` is
    convex in ``t``; ``t*`` is found by a bisection on ``log t`` (no gradient), then
    ``F = t* (logsumexp(l/t*) - log M) + t* rho`` has gradient ``softmax(l / t*)``."""

    def __init__(self, rho: float = 0.1, iterations: int = 60) -> None:
        super().__init__()
        self.rho = check_positive(rho, "rho")
        self.iterations = int(iterations)

    def _dual(self, losses: Tensor, t: Tensor) -> Tensor:
        return t * (torch.logsumexp(losses / t, dim=0) - math.log(losses.numel())) + t * self.rho

    def value(self, losses: Tensor) -> Tensor:
        with torch.no_grad():
            l64 = losses.detach().double()
            spread = float(l64.max() - l64.min())
            if spread == 0.0:
                return losses.mean()
            lo, hi = math.log(spread) - 12.0, math.log(spread) + 12.0
            for _ in range(self.iterations):  # ternary search on the convex dual in log t
                m1, m2 = lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3
                d1 = self._dual(l64, torch.tensor(math.exp(m1), dtype=torch.float64))
                d2 = self._dual(l64, torch.tensor(math.exp(m2), dtype=torch.float64))
                lo, hi = (lo, m2) if d1 <= d2 else (m1, hi)
            t_star = torch.tensor(math.exp((lo + hi) / 2), dtype=losses.dtype, device=losses.device)
        return self._dual(losses, t_star)

    def extra_repr(self) -> str:
        return f"rho={self.rho}"


def project_to_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of ``v (M,)`` onto the probability simplex (sort-based, O(M log M))."""
    u = torch.sort(v, descending=True).values
    css = torch.cumsum(u, dim=0) - 1.0
    ranks = torch.arange(1, v.numel() + 1, device=v.device, dtype=v.dtype)
    rho = int(torch.nonzero(u - css / ranks > 0).max())
    theta = css[rho] / (rho + 1)
    return (v - theta).clamp_min(0.0)


class ChiSquarePenalty(UncertaintySet):
    """``r(p) = (lam / 2) Σ_i (M p_i - 1)^2 / M`` (a chi-square divergence to uniform):
    ``p* = proj_Δ(1/M + l / (lam M))``; larger ``lam`` keeps ``p*`` closer to uniform."""

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        self.lam = check_positive(lam, "lam")

    def value(self, losses: Tensor) -> Tensor:
        m = losses.numel()
        with torch.no_grad():
            p = project_to_simplex(1.0 / m + losses.detach() / (self.lam * m))
            penalty = 0.5 * self.lam * m * ((p - 1.0 / m) ** 2).sum()
        return (p * losses).sum() - penalty

    def extra_repr(self) -> str:
        return f"lam={self.lam}"


class SampledKL(UncertaintySet):
    """The official code's stochastic DRO-KL (``DRO`` with ``p_choice=1``), for reproduction:
    weights ``q ∝ exp(l / t) - 1`` (zero-loss pairs never drawn; all zero -> uniform), truncated to
    the ``num_keep`` largest, ``num_draws`` indices drawn with replacement through ``generator``,
    and ``F`` = the mean of the drawn losses (so ``E[F] = <q~, l>``). ``q`` is computed as
    ``exp(l/t - max) (1 - exp(-l/t))``, finite at any ``t`` where the official code overflows."""

    def __init__(
        self,
        t: float = 0.1,
        num_draws: int = 320,
        num_keep: int = 321,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.t = check_positive(t, "t")
        if num_draws < 1 or num_keep < 1:
            raise ValueError(f"num_draws, num_keep: expected >= 1, got {num_draws}, {num_keep}")
        self.num_draws, self.num_keep = int(num_draws), int(num_keep)
        self.generator = generator

    def weights(self, losses: Tensor) -> Tensor:
        """The truncated sampling distribution ``q~ (M,)`` (float64, sums to 1)."""
        z = losses.detach().double() / self.t
        q = torch.exp(z - z.max()) * (-torch.expm1(-z))
        if float(q.sum()) <= 0.0:
            q = torch.ones_like(q)
        keep = clamp_k(self.num_keep, q.numel(), "num_keep")
        cut = torch.topk(q, keep).values[-1]
        q = torch.where(q >= cut, q, torch.zeros_like(q))
        return q / q.sum()

    def value(self, losses: Tensor) -> Tensor:
        q = self.weights(losses).cpu()
        drawn = torch.multinomial(q, self.num_draws, replacement=True, generator=self.generator)
        return losses[drawn.to(losses.device)].mean()

    def extra_repr(self) -> str:
        return f"t={self.t}, num_draws={self.num_draws}, num_keep={self.num_keep}"
