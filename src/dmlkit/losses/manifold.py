"""Manifold loss (Aziere & Todorovic, CVPR 2019, "Ensemble Deep Manifold Similarity Learning
using Hard Proxies"; PML's ``ManifoldLoss``): similarities measured along the data manifold by a
random walk over the batch and one proxy per class.

With ``X`` the ``B`` unit embeddings followed by the ``C`` unit proxies (``N = B + C`` nodes):

    W   = exp(max(cos(X, X), 0) / T) with a zero diagonal,     D = diag(W 1)
    F   = (1 - α) (I - α D^{-1/2} W D^{-1/2})^{-1}             (N, N) manifold similarities
    l(Z)_i = log(1 + Σ_{c != y_i, z_ic >= 0} exp(z_ic)),   z_ic = Z_ic - Z_{i y_i} + margin
    L   = mean_i l(F[:B, B:])_i + λ_C mean_i l(cos(F[:B], F[B:]))_i

The intrinsic term compares each sample's manifold similarity to its own class proxy with the other
proxies; the context term does the same with the cosine between rows of ``F`` (similarity
profiles). Shapes: ``emb (B, D)``, ``labels (B,)`` in ``0 .. C-1``. Memory O((B + C)²), time
O((B + C)³) (one matrix inverse, always in float32 or float64, also under autocast).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.core.checks import check_positive
from dmlkit.core.similarity import cosine_rows, inner
from dmlkit.losses.proxy import PROXY_CONTEXT
from dmlkit.losses.proxy_losses import ProxyLoss
from dmlkit.losses.registry import LOSSES


def _own_proxy_hinge(z: Tensor, labels: Tensor, margin: float) -> Tensor:
    """``mean_i log(1 + Σ_{c != y_i, x_ic >= 0} exp(x_ic))``, ``x_ic = z_ic - z_{i y_i} + margin``,
    for ``z (B, C)``."""
    rows = torch.arange(z.shape[0], device=z.device)
    x = z - z[rows, labels][:, None] + margin
    other = torch.ones_like(x, dtype=torch.bool)
    other[rows, labels] = False
    terms = torch.where(other & (x >= 0), x, -torch.inf)
    zero = terms.new_zeros(z.shape[0], 1)
    return torch.logsumexp(torch.cat([zero, terms], dim=1), dim=1).mean()


class ManifoldLoss(ProxyLoss):
    """Manifold loss (module docstring) with one proxy per class; ``forward(emb (B, D),
    labels (B,)) -> 0-dim``.

    Defaults as PML: ``lambda_c=1``, ``alpha=0.8``, ``margin=5e-4``, temperature ``T = 0.5``
    (fixed in PML). Differences from PML: PML's proxies are ``K`` meta-classes (default 50) that
    samples are assigned to at random unless the assignment is passed as ``indices_tuple``, and it
    accepts no labels; here the proxies are the classes and the labels are the assignment (PML with
    ``indices_tuple=labels`` and ``K = C`` gives the same values). ``lambda_c`` must be finite
    (PML's ``inf`` for the context term alone is ``lambda_c`` large with a rescaled learning rate).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        lambda_c: float = 1.0,
        alpha: float = 0.8,
        margin: float = 5e-4,
        temperature: float = 0.5,
        proxy_lr: float | None = None,
        proxy_weight_decay: float = 0.0,
    ) -> None:
        super().__init__(num_classes, embedding_dim, 1, proxy_lr, proxy_weight_decay)
        self.lambda_c = check_positive(lambda_c, "lambda_c", allow_zero=True)
        self.alpha = check_positive(alpha, "alpha")
        if self.alpha >= 1.0:
            raise ValueError(f"alpha: expected a value in (0, 1), got {alpha!r}")
        self.margin = check_positive(margin, "margin", allow_zero=True)
        self.temperature = check_positive(temperature, "temperature")

    def manifold_similarity(self, emb: Tensor) -> Tensor:
        """``F ((B + C), (B + C))`` of the embeddings followed by the proxies."""
        unit = cosine_rows(emb, "emb")
        nodes = torch.cat([unit, cosine_rows(self.proxies(), "proxies").to(unit.dtype)])
        with torch.autocast(device_type=nodes.device.type, enabled=False):
            w = torch.exp(inner(nodes, nodes).clamp_min(0.0) / self.temperature)
            w = w * (1.0 - torch.eye(len(nodes), dtype=w.dtype, device=w.device))
            d = w.sum(dim=1).rsqrt()
            eye = torch.eye(len(nodes), dtype=w.dtype, device=w.device)
            return (1.0 - self.alpha) * torch.linalg.inv(eye - self.alpha * (d[:, None] * w * d))

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        labels = self.checked(emb, labels)
        f = self.manifold_similarity(emb)
        b = emb.shape[0]
        loss = _own_proxy_hinge(f[:b, b:], labels, self.margin)
        if self.lambda_c > 0:
            profiles = inner(cosine_rows(f[:b], "profiles"), cosine_rows(f[b:], "proxy profiles"))
            loss = loss + self.lambda_c * _own_proxy_hinge(profiles, labels, self.margin)
        return loss

    def extra_repr(self) -> str:
        return (
            f"lambda_c={self.lambda_c}, alpha={self.alpha}, margin={self.margin}, "
            f"temperature={self.temperature}"
        )


LOSSES.register(
    "manifold",
    family="proxy",
    source="Aziere & Todorovic 2019, manifold loss",
    context=PROXY_CONTEXT,
)(ManifoldLoss)
