"""Proxy losses: ProxyNCA / ProxyNCA++, Normalized Softmax, ProxyAnchor and SoftTriple, each with
``per_class`` proxies per class (a :class:`~dmlkit.losses.proxy.Proxies` module).

Shared notation: ``S (B, C K)`` cosine similarities of the embeddings to the proxies (float32,
also under autocast), proxy ``j`` of class ``c(j)``, ``P_i`` the proxies of sample ``i``'s class.

(1) proxy softmax (scale ``σ``), ``D_i`` all proxies (or those of the other classes with
    ``exclude_positives``)::

        L = mean_i [ LSE_{j∈D_i}(σ S_ij) - LSE_{j∈P_i}(σ S_ij) ]

(2) proxy_anchor, ``P+`` the proxies with a positive in the batch::

        L = 1/|P+| Σ_{j∈P+} log(1 + Σ_{i: y_i = c(j)} e^{-α (S_ij - δ)})
          + 1/(C K) Σ_j log(1 + Σ_{i: y_i ≠ c(j)} e^{α (S_ij + δ)})

(3) soft_triple, with ``S_ick`` the similarity to centre ``k`` of class ``c``::

        s_ic = Σ_k softmax_k(S_ick / γ) S_ick
        L = mean_i CE(λ (s_ic - δ 1[c = y_i]), y_i) + τ R
        R = Σ_c Σ_{k<k'} sqrt(2 + 1e-5 - 2 <p̂_ck, p̂_ck'>) / (C K (K - 1))

Notes. (1) Proxy softmax with scale ``σ``: ``proxy_nca`` is the NCA form on squared distances of
normalised vectors, ``-|x̂ - p̂|² / T = (2 S - 2) / T``, so ``σ = 2 / T`` (T = 1: PML's
``ProxyNCALoss``; Movshovitz-Attias et al. 2017 leave the positives out of the denominator:
``exclude_positives=True``); ``proxy_nca_pp`` is ProxyNCA++ (Teh et al. 2020), the same with
T = 1/9; ``normalized_softmax`` (Zhai & Wu 2019) is ``σ = 1 / T``, T = 0.05. With several proxies
a class's probability is the sum of its proxies' softmax probabilities.
(2) Kim et al. 2020, δ = 0.1, α = 32. (3) Qian et al. 2019, λ = 20, γ = 0.1, τ = 0.2, δ = 0.01,
10 centres per class; PML's ``SoftTripleLoss`` has no τ term (compare at τ = 0).

Memory: O(B C K) for ``S`` and one or two temporaries of its size; time O(B C K D).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmlkit.core.checks import check_embeddings, check_labels, check_positive
from dmlkit.core.similarity import cosine_rows, inner
from dmlkit.losses.proxy import Proxies, register_proxy_loss
from dmlkit.losses.reductions import masked_logsumexp
from dmlkit.losses.regularizers import center_spread


class ProxyLoss(nn.Module):
    """Base of the proxy losses: owns the proxies; ``forward(emb (B, D), labels (B,)) -> 0-dim``.

    ``proxy_lr`` / ``proxy_weight_decay`` configure the proxies' own optimizer group.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        per_class: int = 1,
        proxy_lr: float | None = None,
        proxy_weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.proxies = Proxies(num_classes, per_class, embedding_dim, proxy_lr, proxy_weight_decay)

    def checked(self, emb: Tensor, labels: Tensor) -> Tensor:
        """Validate ``emb (B, D)`` and ``labels (B,)``; return the labels on the proxies' device."""
        check_embeddings(emb, "emb")
        check_labels(labels, emb.shape[0], "labels")
        if emb.shape[1] != self.proxies.dim:
            raise ValueError(
                f"emb: expected dimension {self.proxies.dim} (the proxies'), got {emb.shape[1]}"
            )
        return self.proxies.check_labels(labels)

    def own_columns(self, sim: Tensor, labels: Tensor) -> Tensor:
        """``S`` restricted to each sample's own class proxies: ``(B, K)``."""
        px = self.proxies
        rows = torch.arange(sim.shape[0], device=sim.device)
        return sim.view(sim.shape[0], px.num_classes, px.per_class)[rows, labels]


class ProxySoftmaxLoss(ProxyLoss):
    """Softmax over proxies with scale ``σ`` (module docstring, (1))."""

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float,
        per_class: int = 1,
        exclude_positives: bool = False,
        **proxy_options: Any,
    ) -> None:
        super().__init__(num_classes, embedding_dim, per_class, **proxy_options)
        if exclude_positives and num_classes < 2:
            raise ValueError("exclude_positives: expected num_classes >= 2 (negatives to compare)")
        self.scale = check_positive(scale, "scale")
        self.exclude_positives = bool(exclude_positives)

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        labels = self.checked(emb, labels)
        sim = inner(cosine_rows(emb, "emb"), cosine_rows(self.proxies(), "proxies"))
        positive = torch.logsumexp(self.scale * self.own_columns(sim, labels), dim=1)
        if self.exclude_positives:
            neg = labels[:, None] != self.proxies.labels[None, :]
            denominator, _ = masked_logsumexp(sim, neg, scale=self.scale)
        else:
            denominator = torch.logsumexp(self.scale * sim, dim=1)
        return (denominator - positive).mean()

    def extra_repr(self) -> str:
        return f"scale={self.scale}, exclude_positives={self.exclude_positives}"


class ProxyAnchorLoss(ProxyLoss):
    """Proxy-Anchor (module docstring, (2)): proxies are the anchors, the batch the references."""

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        margin: float = 0.1,
        alpha: float = 32.0,
        per_class: int = 1,
        **proxy_options: Any,
    ) -> None:
        super().__init__(num_classes, embedding_dim, per_class, **proxy_options)
        self.margin = float(margin)
        self.alpha = check_positive(alpha, "alpha")

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        labels = self.checked(emb, labels)
        sim_t = inner(cosine_rows(self.proxies(), "proxies"), cosine_rows(emb, "emb"))  # (C K, B)
        pos = self.proxies.labels[:, None] == labels[None, :]
        pos_lse, has_pos = masked_logsumexp(
            self.margin - sim_t, pos, add_one=True, scale=self.alpha
        )
        neg_lse, _ = masked_logsumexp(sim_t + self.margin, ~pos, add_one=True, scale=self.alpha)
        pos_term = pos_lse.sum() / has_pos.sum().clamp_min(1)
        return pos_term + neg_lse.sum() / sim_t.shape[0]

    def extra_repr(self) -> str:
        return f"margin={self.margin}, alpha={self.alpha}"


class _Workspace:
    """Scratch tensors kept between calls: ``get(like, slot)`` returns an uninitialised tensor of
    ``like``'s shape, dtype and device, reusing the slot's previous storage when it is large
    enough. Only for values that do not outlive the call that fills them (on the CPU a fresh
    matrix of tens of megabytes costs its page faults on every step)."""

    def __init__(self) -> None:
        self.held: dict[int, Tensor] = {}

    def get(self, like: Tensor, slot: int) -> Tensor:
        held = self.held.get(slot)
        if (
            held is None
            or held.numel() < like.numel()
            or held.dtype != like.dtype
            or held.device != like.device
        ):
            held = self.held[slot] = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
        return held[: like.numel()].view(like.shape)


def _exp(scaled: Tensor, shift: Tensor | None, out: Tensor) -> Tensor:
    """``exp(scaled - shift)`` written into ``out``."""
    if shift is None:
        return torch.exp(scaled, out=out)
    return torch.sub(scaled, shift, out=out).exp_()


class _SoftClassSimilarity(torch.autograd.Function):
    """``s_c = γ Σ_k p_k T_kc`` with ``p = softmax_k(T)``, ``T = x' Wᵀ / γ`` viewed ``(B, K, C)``.

    Inputs ``x' = x̂ / γ (B, D)`` and the unit centres ``W (K C, D)`` ordered centre-major (row
    ``k C + c`` is centre ``k`` of class ``c``), so every elementwise step runs along the
    contiguous class dimension. Only ``T`` (one matrix of size ``B K C``) and per-class vectors
    are saved; ``e = exp(T - shift)`` and the product ``e T`` live in a workspace that is reused
    across steps, and the backward recomputes ``e`` there (one pass, cheaper than a fresh matrix
    on the CPU). The shift is 0 when ``1/γ <= 80`` (``|T| <= 1/γ`` for unit vectors, so ``e``
    cannot overflow), else the max over the centres.
    Backward with ``Z = Σ_k e_k``: ``dT_kc = p_kc g_c (γ T_kc + γ - s_c)``, computed as
    ``e_kc (T_kc g_c γ / Z_c + g_c (γ - s_c) / Z_c)`` (a fused multiply-add and a product in a
    second workspace), then ``dx' = dT W`` and ``dW = dTᵀ x'``.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, centres: Tensor, per_class: int, gamma: float, workspace: _Workspace
    ) -> Tensor:
        num_classes = centres.shape[0] // per_class
        scaled = (x @ centres.T).view(x.shape[0], per_class, num_classes)
        shift = scaled.amax(dim=1, keepdim=True) if 1.0 / gamma > 80.0 else None
        exp = _exp(scaled, shift, workspace.get(scaled, 0))
        total = exp.sum(dim=1)
        value = exp.mul_(scaled).sum(dim=1).div_(total).mul_(gamma)
        ctx.save_for_backward(x, centres, scaled, shift, total, value)
        ctx.gamma, ctx.workspace = gamma, workspace
        return value

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None, None, None]:
        x, centres, scaled, shift, total, value = ctx.saved_tensors
        slope = grad * ctx.gamma / total
        offset = slope - grad * value / total
        exp = _exp(scaled, shift, ctx.workspace.get(scaled, 0))
        d_scaled = torch.addcmul(
            offset[:, None, :], scaled, slope[:, None, :], out=ctx.workspace.get(scaled, 1)
        )
        d_scaled = d_scaled.mul_(exp).view(x.shape[0], -1)
        return d_scaled @ centres, d_scaled.T @ x, None, None, None


class SoftTripleLoss(ProxyLoss):
    """SoftTriple (module docstring, (3)); ``per_class`` is the number of centres per class."""

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float = 20.0,
        gamma: float = 0.1,
        tau: float = 0.2,
        margin: float = 0.01,
        per_class: int = 10,
        **proxy_options: Any,
    ) -> None:
        super().__init__(num_classes, embedding_dim, per_class, **proxy_options)
        self.scale = check_positive(scale, "scale")
        self.gamma = check_positive(gamma, "gamma")
        self.tau = check_positive(tau, "tau", allow_zero=True)
        self.margin = float(margin)
        self.workspace = _Workspace()

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        labels = self.checked(emb, labels)
        px = self.proxies
        centres = (
            cosine_rows(px(), "proxies").view(px.num_classes, px.per_class, -1).transpose(0, 1)
        )
        centres = centres.reshape(-1, px.dim)  # (K C, D), centre-major
        x = cosine_rows(emb, "emb")
        dtype = torch.promote_types(x.dtype, centres.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, centres = x.to(dtype) / self.gamma, centres.to(dtype)
            class_sim: Tensor = _SoftClassSimilarity.apply(
                x, centres, px.per_class, self.gamma, self.workspace
            )
        margin = F.one_hot(labels, px.num_classes).to(class_sim.dtype) * self.margin
        loss = F.cross_entropy(self.scale * (class_sim - margin), labels)
        if self.tau > 0 and px.per_class > 1:
            loss = loss + self.tau * self.center_spread()
        return loss

    def center_spread(self) -> Tensor:
        """``R = Σ_c Σ_{k<k'} sqrt(2 + 1e-5 - 2 <p̂_ck, p̂_ck'>) / (C K (K - 1))``."""
        return center_spread(self.proxies(), self.proxies.per_class)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, gamma={self.gamma}, tau={self.tau}, margin={self.margin}"


@register_proxy_loss("proxy_nca", family="proxy", source="Movshovitz-Attias et al. 2017, ProxyNCA")
def proxy_nca(
    num_classes: int,
    embedding_dim: int,
    temperature: float = 1.0,
    per_class: int = 1,
    exclude_positives: bool = False,
    **proxy: Any,
) -> ProxySoftmaxLoss:
    """ProxyNCA: softmax of ``-|x̂ - p̂|² / T`` over the proxies (``σ = 2 / T``), T = 1."""
    t = check_positive(temperature, "temperature")
    return ProxySoftmaxLoss(
        num_classes, embedding_dim, 2.0 / t, per_class, exclude_positives,
        **proxy,
    )  # fmt: skip


@register_proxy_loss("proxy_nca_pp", family="proxy", source="Teh et al. 2020, ProxyNCA++")
def proxy_nca_pp(
    num_classes: int,
    embedding_dim: int,
    temperature: float = 1.0 / 9.0,
    per_class: int = 1,
    **proxy: Any,
) -> ProxySoftmaxLoss:
    """ProxyNCA++: ProxyNCA with the positives in the denominator and T = 1/9 (``σ = 18``)."""
    t = check_positive(temperature, "temperature")
    return ProxySoftmaxLoss(
        num_classes, embedding_dim, 2.0 / t, per_class,
        **proxy,
    )  # fmt: skip


@register_proxy_loss(
    "normalized_softmax", family="proxy", source="Zhai & Wu 2019, normalized softmax"
)
def normalized_softmax(
    num_classes: int,
    embedding_dim: int,
    temperature: float = 0.05,
    per_class: int = 1,
    **proxy: Any,
) -> ProxySoftmaxLoss:
    """Normalized Softmax: cross-entropy of ``cos(x, p) / T`` over the proxies, T = 0.05."""
    t = check_positive(temperature, "temperature")
    return ProxySoftmaxLoss(
        num_classes, embedding_dim, 1.0 / t, per_class,
        **proxy,
    )  # fmt: skip


@register_proxy_loss("proxy_anchor", family="proxy", source="Kim et al. 2020, Proxy Anchor")
def proxy_anchor(
    num_classes: int,
    embedding_dim: int,
    margin: float = 0.1,
    alpha: float = 32.0,
    per_class: int = 1,
    **proxy: Any,
) -> ProxyAnchorLoss:
    """Proxy-Anchor, δ = 0.1, α = 32."""
    return ProxyAnchorLoss(
        num_classes, embedding_dim, margin, alpha, per_class,
        **proxy,
    )  # fmt: skip


@register_proxy_loss("soft_triple", family="proxy", source="Qian et al. 2019, SoftTriple")
def soft_triple(
    num_classes: int,
    embedding_dim: int,
    scale: float = 20.0,
    gamma: float = 0.1,
    tau: float = 0.2,
    margin: float = 0.01,
    per_class: int = 10,
    **proxy: Any,
) -> SoftTripleLoss:
    """SoftTriple, λ = 20, γ = 0.1, τ = 0.2, δ = 0.01, 10 centres per class."""
    return SoftTripleLoss(
        num_classes, embedding_dim, scale, gamma, tau, margin, per_class,
        **proxy,
    )  # fmt: skip
