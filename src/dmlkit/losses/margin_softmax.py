"""Margin softmax losses of face recognition: ArcFace, Sub-center ArcFace, CosFace, SphereFace,
Large-Margin Softmax and P2SGrad, on one code path over the class weights (a
:class:`~dmlkit.losses.proxy.Proxies` module, ``per_class`` rows per class).

Notation: ``x_i (D,)`` an embedding, ``w_j`` the weight of class ``j``, ``c_ij = cos θ_ij`` the
cosine of ``x_i`` and ``w_j`` (with ``K`` sub-centres per class, the largest cosine over class
``j``'s centres), ``y_i`` the label. Every loss here is

    z_ij = s · M_ij · (ψ(c_ij) if j = y_i else c_ij)          logits (B, C)
    L    = mean_i CE(z_i, y_i)                                cross-entropy objective
    L    = mean_ij (z_ij - 1[j = y_i])²                       squared-error objective (P2SGrad)

with one target transform ``ψ`` per loss and the magnitude ``M_ij``:

=====================  ==============================================  ===================  ====
loss                   ψ(c), θ = arccos c                              M_ij                 obj.
=====================  ==============================================  ===================  ====
arcface                cos(θ + m) if θ <= π - m, else c - m sin m      1                    CE
subcenter_arcface      as arcface, c the max over K sub-centres        1                    CE
cosface                c - m                                           1                    CE
sphereface             (-1)^k cos(m θ) - 2k, θ ∈ [kπ/m, (k+1)π/m]      |x_i|                CE
large_margin_softmax   as sphereface                                   |x_i| |w_j|          CE
p2sgrad                c                                               1                    SE
=====================  ==============================================  ===================  ====

``cos(m θ)`` is the Chebyshev polynomial ``T_m(c)`` (``T_0 = 1``, ``T_1 = c``,
``T_{n+1} = 2c T_n - T_{n-1}``), so it has a gradient everywhere; ``k`` is a constant for
autograd. ArcFace's ``cos(θ + m) = c cos m - sqrt(1 - c²) sin m`` is computed without
``arccos``; where ``c = ±1`` the square root's (infinite) derivative is replaced by 0.

Shapes: ``emb (B, D)`` float, ``labels (B,)`` int64 class ids in ``0..C-1``; the weights
``(C K, D)`` float32. Cosines, norms and logits are float32 (float64 for float64 input), also
under ``torch.autocast``. Memory: O(B C K) for the cosines and O(B C) for the logits; time
O(B C K D).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmlkit.core.checks import check_positive
from dmlkit.core.norms import row_norms
from dmlkit.core.similarity import cosine_rows, inner
from dmlkit.losses.proxy import register_proxy_loss
from dmlkit.losses.proxy_losses import ProxyLoss

Magnitude = Literal["none", "embedding", "embedding_and_weight"]
Objective = Literal["cross_entropy", "squared_error"]
MAGNITUDES: tuple[str, ...] = ("none", "embedding", "embedding_and_weight")
OBJECTIVES: tuple[str, ...] = ("cross_entropy", "squared_error")


class TargetTransform(nn.Module):
    """``ψ``: the logit of each sample's own class from its cosine, ``(B,) -> (B,)``."""

    def forward(self, cos: Tensor) -> Tensor:
        raise NotImplementedError


class Identity(TargetTransform):
    """``ψ(c) = c`` (no margin)."""

    def forward(self, cos: Tensor) -> Tensor:
        return cos


class AdditiveCosineMargin(TargetTransform):
    """``ψ(c) = c - m`` (CosFace)."""

    def __init__(self, margin: float) -> None:
        super().__init__()
        self.margin = check_positive(margin, "margin", allow_zero=True)

    def forward(self, cos: Tensor) -> Tensor:
        return cos - self.margin

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


def _safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(max(x, 0))`` with derivative 0 where ``x <= 0`` (not infinite or NaN)."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0).sqrt(), 0.0)


class AdditiveAngularMargin(TargetTransform):
    """``ψ(c) = cos(θ + m)`` for ``θ <= π - m``, else ``c - m sin m`` (ArcFace); ``m`` in radians,
    ``0 <= m < π``. The second branch keeps ``ψ`` decreasing in ``θ`` past ``π - m``, where it
    drops by ``cos m + m sin m - 1`` (as in the ArcFace code and PML)."""

    def __init__(self, margin: float) -> None:
        super().__init__()
        m = check_positive(margin, "margin", allow_zero=True)
        if m >= math.pi:
            raise ValueError(f"margin: expected an angle in radians in [0, pi), got {margin!r}")
        self.margin = m

    def forward(self, cos: Tensor) -> Tensor:
        m = self.margin
        cos = cos.clamp(-1.0, 1.0)
        shifted = cos * math.cos(m) - _safe_sqrt(1.0 - cos * cos) * math.sin(m)
        return torch.where(cos >= -math.cos(m), shifted, cos - m * math.sin(m))

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class MultiplicativeAngularMargin(TargetTransform):
    """``ψ(c) = (-1)^k cos(m θ) - 2k`` with ``k = floor(m θ / π)`` (L-Softmax, SphereFace);
    ``m`` a positive integer. ``ψ`` is continuous and decreasing in ``θ`` on ``[0, π]``."""

    def __init__(self, margin: int) -> None:
        super().__init__()
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 1:
            raise ValueError(f"margin: expected a positive int (angle multiplier), got {margin!r}")
        self.margin = margin

    def forward(self, cos: Tensor) -> Tensor:
        cos = cos.clamp(-1.0, 1.0)
        previous, current = torch.ones_like(cos), cos
        for _ in range(self.margin - 1):
            previous, current = current, 2.0 * cos * current - previous
        with torch.no_grad():
            k = torch.floor(torch.acos(cos) * self.margin / math.pi).clamp_(max=self.margin)
            sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
        return sign * current - 2.0 * k

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class MarginSoftmaxLoss(ProxyLoss):
    """Margin softmax over class weights (module docstring): ``target`` is ``ψ``, ``scale`` is
    ``s``, ``magnitude`` chooses ``M`` (``none``, ``embedding``: ``|x_i|``,
    ``embedding_and_weight``: ``|x_i| |w_j|``, which needs ``per_class = 1``), ``objective``
    ``cross_entropy`` or ``squared_error``. ``forward(emb (B, D), labels (B,)) -> 0-dim``."""

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        target: TargetTransform,
        scale: float = 1.0,
        per_class: int = 1,
        magnitude: Magnitude = "none",
        objective: Objective = "cross_entropy",
        **proxy_options: Any,
    ) -> None:
        super().__init__(num_classes, embedding_dim, per_class, **proxy_options)
        if magnitude not in MAGNITUDES:
            raise ValueError(f"magnitude: expected one of {MAGNITUDES}, got {magnitude!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
        if magnitude == "embedding_and_weight" and per_class != 1:
            raise ValueError(
                f"per_class: expected 1 with magnitude='embedding_and_weight' (one weight norm "
                f"per class), got {per_class}"
            )
        self.target = target
        self.scale = check_positive(scale, "scale")
        self.magnitude = magnitude
        self.objective = objective

    def cosines(self, emb: Tensor) -> Tensor:
        """``c (B, C)``: cosines of the embeddings to the classes (the max over sub-centres)."""
        px = self.proxies
        cos = inner(emb / row_norms(emb).clamp_min(1e-12)[:, None], cosine_rows(px(), "proxies"))
        if px.per_class > 1:
            cos = cos.view(cos.shape[0], px.num_classes, px.per_class).amax(dim=2)
        return cos

    def logits(self, emb: Tensor, labels: Tensor) -> Tensor:
        """``z (B, C)`` (module docstring) for checked ``labels``."""
        dtype = torch.float64 if emb.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=emb.device.type, enabled=False):
            emb = emb.to(dtype)
            cos = self.cosines(emb)
            own = labels[:, None]
            z = cos.scatter(1, own, self.target(cos.gather(1, own).squeeze(1))[:, None])
            if self.magnitude != "none":
                z = z * row_norms(emb)[:, None]
            if self.magnitude == "embedding_and_weight":
                z = z * row_norms(self.proxies().to(dtype))[None, :]
            return z * self.scale

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        labels = self.checked(emb, labels)
        z = self.logits(emb, labels)
        if self.objective == "squared_error":
            return (z - F.one_hot(labels, z.shape[1]).to(z.dtype)).square().mean()
        return F.cross_entropy(z, labels)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, magnitude={self.magnitude!r}, objective={self.objective!r}"


@register_proxy_loss("arcface", family="margin softmax", source="Deng et al. 2019, ArcFace")
def arcface(
    num_classes: int,
    embedding_dim: int,
    margin: float = 0.5,
    scale: float = 64.0,
    **proxy: Any,
) -> MarginSoftmaxLoss:
    """ArcFace (additive angular margin): ``z_iy = s cos(θ_iy + m)``, ``z_ij = s cos θ_ij``,
    cross-entropy; m = 0.5 rad, s = 64 as in the paper. ``margin`` is in radians; PML's
    ``ArcFaceLoss`` takes degrees with default 28.6° (0.4992 rad)."""
    return MarginSoftmaxLoss(
        num_classes, embedding_dim, AdditiveAngularMargin(margin), scale,
        **proxy,
    )  # fmt: skip


@register_proxy_loss(
    "subcenter_arcface", family="margin softmax", source="Deng et al. 2020, Sub-center ArcFace"
)
def subcenter_arcface(
    num_classes: int,
    embedding_dim: int,
    margin: float = 0.5,
    scale: float = 64.0,
    sub_centers: int = 3,
    **proxy: Any,
) -> MarginSoftmaxLoss:
    """Sub-center ArcFace: ArcFace on ``cos θ_ij = max_k cos(x_i, w_jk)`` over ``sub_centers``
    weights per class; m = 0.5 rad, s = 64, K = 3 as in the paper. ``margin`` is in radians
    (PML's ``SubCenterArcFaceLoss``: degrees, default 28.6°)."""
    return MarginSoftmaxLoss(
        num_classes, embedding_dim, AdditiveAngularMargin(margin), scale, sub_centers,
        **proxy,
    )  # fmt: skip


@register_proxy_loss("cosface", family="margin softmax", source="Wang et al. 2018, CosFace")
def cosface(
    num_classes: int,
    embedding_dim: int,
    margin: float = 0.35,
    scale: float = 64.0,
    **proxy: Any,
) -> MarginSoftmaxLoss:
    """CosFace (large margin cosine loss): ``z_iy = s (cos θ_iy - m)``, ``z_ij = s cos θ_ij``,
    cross-entropy; m = 0.35, s = 64 (the paper's and PML's defaults)."""
    return MarginSoftmaxLoss(
        num_classes, embedding_dim, AdditiveCosineMargin(margin), scale,
        **proxy,
    )  # fmt: skip


@register_proxy_loss("sphereface", family="margin softmax", source="Liu et al. 2017, SphereFace")
def sphereface(
    num_classes: int,
    embedding_dim: int,
    margin: int = 4,
    scale: float = 1.0,
    **proxy: Any,
) -> MarginSoftmaxLoss:
    """SphereFace (A-Softmax): unit class weights, ``z_iy = s |x_i| ψ(θ_iy)`` with
    ``ψ(θ) = (-1)^k cos(m θ) - 2k``, ``z_ij = s |x_i| cos θ_ij``, cross-entropy; m = 4, s = 1 as
    PML's ``SphereFaceLoss``. The paper's annealing of ``ψ`` towards ``cos θ`` during training is
    not part of the loss (as in PML)."""
    return MarginSoftmaxLoss(
        num_classes, embedding_dim, MultiplicativeAngularMargin(margin), scale,
        magnitude="embedding", **proxy,
    )  # fmt: skip


@register_proxy_loss(
    "large_margin_softmax", family="margin softmax", source="Liu et al. 2016, Large-Margin Softmax"
)
def large_margin_softmax(
    num_classes: int,
    embedding_dim: int,
    margin: int = 4,
    scale: float = 1.0,
    **proxy: Any,
) -> MarginSoftmaxLoss:
    """Large-Margin Softmax (L-Softmax): ``z_iy = s |w_y| |x_i| ψ(θ_iy)`` with SphereFace's
    ``ψ``, ``z_ij = s |w_j| |x_i| cos θ_ij`` (unnormalised weights), cross-entropy; m = 4,
    s = 1 as PML's ``LargeMarginSoftmaxLoss``. The weights start with rows of norm about 1
    (PML's start as standard normal entries, norm about ``sqrt(D)``); no annealing (as PML)."""
    return MarginSoftmaxLoss(
        num_classes, embedding_dim, MultiplicativeAngularMargin(margin), scale,
        magnitude="embedding_and_weight", **proxy,
    )  # fmt: skip


@register_proxy_loss("p2sgrad", family="margin softmax", source="Zhang et al. 2019, P2SGrad")
def p2sgrad(
    num_classes: int,
    embedding_dim: int,
    **proxy: Any,
) -> MarginSoftmaxLoss:
    """P2SGrad: ``L = mean_{i,j} (cos θ_ij - 1[j = y_i])²`` over the ``B x C`` cosines to unit
    class weights, whose gradient is the paper's cosine-driven update (no margin, no scale).
    As PML's ``P2SGradLoss`` (mean over all entries); the weight gradient here is the one of
    ``w / |w|`` (tangent to the sphere), whereas PML re-normalises the weights in place and
    differentiates ``w`` itself."""
    return MarginSoftmaxLoss(
        num_classes, embedding_dim, Identity(), objective="squared_error",
        **proxy,
    )  # fmt: skip
