"""The loss trained by chance-constrained proxies (CCP; Gurbuz, Can, Alatan, WACV 2024).

With ``N`` the Lipschitz L2 normalisation (:func:`dmlkit.core.lipschitz_normalize`), ``P`` the
``K C`` proxies and ``ℓ`` any loss of the pair engine or triplet family::

    L = w_pair · ℓ(N(x), y)  +  w_proxy · ℓ(N(x), y, ref_emb = N(P), ref_labels = proxy classes)

the first term within the batch (self-pairs excluded), the second with the batch samples as
anchors and all proxies as references. Defaults ``w_pair = 0.1``, ``w_proxy = 1`` (the official
code). The base loss's similarity applies to the normalised vectors: use ``dot`` (contrastive
C1, multi-similarity) or ``neg_euclidean`` (C2, triplet) to reproduce the paper, whose
similarity is the plain dot product and distance the plain Euclidean distance after ``N``.

Memory: the base loss's O(B²) plus O(B K C) for the proxy term, and the proxies O(K C D).
"""

from __future__ import annotations

import inspect

from torch import Tensor, nn

from dmlkit.core.checks import check_embeddings, check_labels, check_positive
from dmlkit.core.lipschitz import lipschitz_normalize
from dmlkit.losses.proxy import Proxies
from dmlkit.methods.ccp_options import CCPOptions


def _accepts_references(loss: nn.Module) -> bool:
    params = inspect.signature(loss.forward).parameters
    return "ref_emb" in params and "ref_labels" in params


class CCPLoss(nn.Module):
    """``base`` applied within the batch and against ``per_class`` proxies of each class.

    ``forward(emb (B, D), labels (B,)) -> 0-dim``. ``lipschitz=False`` skips ``N`` (the base
    loss's own similarity then decides the normalisation). ``proxy_lr`` and
    ``proxy_weight_decay`` configure the proxies' own optimizer group.
    """

    def __init__(
        self,
        base: nn.Module,
        num_classes: int,
        embedding_dim: int,
        per_class: int = CCPOptions.per_class,
        pair_weight: float = CCPOptions.pair_weight,
        proxy_weight: float = CCPOptions.proxy_weight,
        lipschitz: bool = CCPOptions.lipschitz,
        proxy_lr: float | None = None,
        proxy_weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if not _accepts_references(base):
            raise TypeError(
                f"base: expected a loss with forward(emb, labels, ref_emb, ref_labels) (pair "
                f"engine or triplet family), got {type(base).__name__}"
            )
        self.base = base
        self.proxies = Proxies(num_classes, per_class, embedding_dim, proxy_lr, proxy_weight_decay)
        self.pair_weight = check_positive(pair_weight, "pair_weight", allow_zero=True)
        self.proxy_weight = check_positive(proxy_weight, "proxy_weight", allow_zero=True)
        self.lipschitz = bool(lipschitz)

    def normalize(self, x: Tensor) -> Tensor:
        return lipschitz_normalize(x) if self.lipschitz else x

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        check_embeddings(emb, "emb")
        check_labels(labels, emb.shape[0], "labels")
        labels = self.proxies.check_labels(labels)
        z = self.normalize(emb)
        proxies = self.normalize(self.proxies())
        to_proxies: Tensor = self.base(z, labels, proxies, self.proxies.labels)
        loss = self.proxy_weight * to_proxies
        if self.pair_weight > 0:
            loss = loss + self.pair_weight * self.base(z, labels)
        return loss

    def extra_repr(self) -> str:
        return (
            f"pair_weight={self.pair_weight}, proxy_weight={self.proxy_weight}, "
            f"lipschitz={self.lipschitz}"
        )
