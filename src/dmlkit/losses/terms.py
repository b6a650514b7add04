"""Pair terms: the per-pair losses ``l+(s)`` for positive pairs and ``l-(s)`` for negatives.

A term maps the similarity matrix ``S (B, R)`` elementwise to ``(l+ (B, R), l- (B, R))``; the
aggregator later decides which entries count (the masks) and how they combine. Every term is
written for "higher similarity = more alike" (see :mod:`dmlkit.core.similarity`); with a distance
``d`` use the ``neg_euclidean`` similarity ``s = -d``. Memory: two (B, R) tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmlkit.core.checks import check_positive


def _scaled(x: Tensor, weight: float) -> Tensor:
    """``weight * x``, skipping the full-matrix multiply for the common weight 1."""
    return x if weight == 1.0 else weight * x


class PairTerm(nn.Module):
    """Base class: ``forward(S) -> (l_pos, l_neg)``, both shaped like ``S``."""

    def forward(self, sim: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class LinearTerm(PairTerm):
    """``l+ = c (m+ - s)``, ``l- = c (s - m-)`` (lifted structure, N-pair, multi-similarity inner
    terms; with ``c = 1/τ`` the logits of temperature-scaled softmax losses such as NT-Xent)."""

    def __init__(
        self, pos_margin: float = 0.0, neg_margin: float = 0.0, scale: float = 1.0
    ) -> None:
        super().__init__()
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)
        self.scale = check_positive(scale, "scale")

    def forward(self, sim: Tensor) -> tuple[Tensor, Tensor]:
        return _scaled(self.pos_margin - sim, self.scale), _scaled(
            sim - self.neg_margin, self.scale
        )

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, scale={self.scale}"


class HingeTerm(PairTerm):
    """``l+ = w+ [m+ - s]_+^p``, ``l- = w- [s - m-]_+^p`` (contrastive; DRO margin loss).

    ``power=2`` gives the squared hinge of Hadsell et al. With ``pos_margin = 1`` and cosine
    similarity, ``l+ = 1 - s`` on every positive (the GPW "similarity form" of contrastive).
    """

    def __init__(
        self,
        pos_margin: float = 1.0,
        neg_margin: float = 0.5,
        power: float = 1.0,
        pos_weight: float = 1.0,
        neg_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)
        self.power = check_positive(power, "power")
        if self.power < 1.0:
            raise ValueError(
                f"power: expected a value >= 1 (a smaller power has an infinite slope at an "
                f"inactive hinge), got {power!r}"
            )
        self.pos_weight = check_positive(pos_weight, "pos_weight", allow_zero=True)
        self.neg_weight = check_positive(neg_weight, "neg_weight", allow_zero=True)

    def forward(self, sim: Tensor) -> tuple[Tensor, Tensor]:
        lp = (self.pos_margin - sim).relu_()
        ln = (sim - self.neg_margin).relu_()
        if self.power != 1.0:
            lp, ln = lp.pow(self.power), ln.pow(self.power)
        return _scaled(lp, self.pos_weight), _scaled(ln, self.neg_weight)

    def extra_repr(self) -> str:
        return (
            f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, power={self.power}, "
            f"pos_weight={self.pos_weight}, neg_weight={self.neg_weight}"
        )


class SoftplusTerm(PairTerm):
    """Binomial deviance: ``l+ = w+ softplus(a (λ - s))``, ``l- = w- softplus(b (s - λ))``.

    ``softplus(z) = log(1 + e^z)`` is evaluated stably for any ``z``. The DRO paper's binomial
    base loss is ``w+ = 2/a``, ``w- = 2/b`` with ``a = 2``, ``b = 40``, ``λ = 0.5``.
    """

    def __init__(
        self,
        scale_pos: float = 2.0,
        scale_neg: float = 40.0,
        threshold: float = 0.5,
        pos_weight: float = 1.0,
        neg_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.scale_pos = check_positive(scale_pos, "scale_pos")
        self.scale_neg = check_positive(scale_neg, "scale_neg")
        self.threshold = float(threshold)
        self.pos_weight = check_positive(pos_weight, "pos_weight", allow_zero=True)
        self.neg_weight = check_positive(neg_weight, "neg_weight", allow_zero=True)

    def forward(self, sim: Tensor) -> tuple[Tensor, Tensor]:
        lp = F.softplus(sim.mul(-self.scale_pos).add_(self.scale_pos * self.threshold))
        ln = F.softplus(sim.mul(self.scale_neg).sub_(self.scale_neg * self.threshold))
        return _scaled(lp, self.pos_weight), _scaled(ln, self.neg_weight)

    def extra_repr(self) -> str:
        return (
            f"scale_pos={self.scale_pos}, scale_neg={self.scale_neg}, threshold={self.threshold}, "
            f"pos_weight={self.pos_weight}, neg_weight={self.neg_weight}"
        )


class CircleTerm(PairTerm):
    """Circle loss logits (Sun et al. 2020), with self-paced weights held constant:

    ``l+ = -γ [1 + m - s]_+ (s - (1 - m))``, ``l- = γ [s + m]_+ (s - m)``; the bracketed weights
    are detached, as in the paper's gradient analysis.
    """

    def __init__(self, m: float = 0.4, gamma: float = 80.0) -> None:
        super().__init__()
        self.m = float(m)
        self.gamma = check_positive(gamma, "gamma")

    def forward(self, sim: Tensor) -> tuple[Tensor, Tensor]:
        return self.logits(sim, sim.detach())

    def logits(self, sim: Tensor, s_const: Tensor) -> tuple[Tensor, Tensor]:
        """The logits with the self-paced weights computed from the constant ``s_const``."""
        alpha_p = torch.relu(1.0 + self.m - s_const)
        alpha_n = torch.relu(s_const + self.m)
        lp = -self.gamma * alpha_p * (sim - (1.0 - self.m))
        ln = self.gamma * alpha_n * (sim - self.m)
        return lp, ln

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}"


class AngularMarginTerm(PairTerm):
    """Tuplet margin logits (Yu & Tao 2019) on cosine similarities ``s = cos θ``:

    ``l+ = -γ cos(θ - β)``, ``l- = γ s``; ``β`` is the slack margin (radians) given to positives.
    ``cos(θ - β) = s cos β + sin θ sin β`` with ``sin θ = sqrt(max(1 - s², eps))`` (``eps`` the
    dtype's machine epsilon), so duplicates (``θ = 0``, where the angle has no derivative) get a
    finite gradient. Expects ``s`` in [-1, 1] (cosine similarity).
    """

    def __init__(self, margin: float = 0.1, scale: float = 64.0) -> None:
        super().__init__()
        self.margin = float(margin)
        self.scale = check_positive(scale, "scale")

    def forward(self, sim: Tensor) -> tuple[Tensor, Tensor]:
        sin = (1.0 - sim * sim).clamp_min(torch.finfo(sim.dtype).eps).sqrt()
        shifted = sim * math.cos(self.margin) + sin * math.sin(self.margin)
        return -self.scale * shifted, self.scale * sim

    def extra_repr(self) -> str:
        return f"margin={self.margin}, scale={self.scale}"
