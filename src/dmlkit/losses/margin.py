"""Margin loss (Wu et al. 2017, "Sampling Matters in Deep Embedding Learning").

For triplets (a, p, n) with Euclidean distances ``d`` between L2-normalised embeddings and a
boundary ``β_{y_a}`` learnable per class:

    L = [Σ_t ([d_ap - β + α]_+ + [β - d_an + α]_+) + ν Σ_t β_{y_a}] / (#active pos + #active neg)

(pytorch-metric-learning's MarginLoss reduction). Triplets come from distance-weighted sampling
(default; an explicit ``generator`` makes it reproducible) or from all triplets of the batch
(``triplets="all"``, computed from pairs with multiplicities |N_a| and |P_a|, never B x B x B).
The betas stay float32 under autocast; give them their own optimizer group with
:meth:`MarginLoss.param_groups`. Memory O(B R).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmlkit.core.checks import check_positive
from dmlkit.core.relations import RelationFn
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.registry import LOSSES
from dmlkit.losses.triplet_sampling import cosine_to_distance, distance_weighted_triplets


class MarginLoss(BatchLoss):
    """Margin loss with per-class (``num_classes``) or global learnable boundary β."""

    def __init__(
        self,
        num_classes: int | None = None,
        margin: float = 0.2,
        beta_init: float = 1.2,
        learn_beta: bool = True,
        nu: float = 0.0,
        triplets: str = "distance_weighted",
        generator: torch.Generator | None = None,
        lower_cutoff: float = 0.5,
        upper_cutoff: float | None = 1.4,
        relation_fn: RelationFn | None = None,
    ) -> None:
        super().__init__("cosine", relation_fn)
        if triplets not in ("distance_weighted", "all"):
            raise ValueError(f"triplets: expected 'distance_weighted' or 'all', got {triplets!r}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1 or None, got {num_classes}")
        self.num_classes = num_classes
        self.margin = check_positive(margin, "margin", allow_zero=True)
        self.nu = check_positive(nu, "nu", allow_zero=True)
        self.triplets = triplets
        self.generator = generator
        self.lower_cutoff = lower_cutoff
        self.upper_cutoff = upper_cutoff
        beta = torch.full((num_classes or 1,), float(beta_init), dtype=torch.float32)
        self.beta = nn.Parameter(beta, requires_grad=learn_beta)

    def param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict[str, object]]:
        """One optimizer group for the betas (Wu et al. train them with their own rate)."""
        return [{"params": [self.beta], "lr": lr, "weight_decay": weight_decay}]

    def _anchor_beta(self, labels: Tensor) -> Tensor:
        if self.num_classes is None:
            return self.beta.expand(labels.shape[0])
        if labels.ndim != 1:
            raise ValueError("labels: per-class betas need class ids of shape (B,), got multi-hot")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"labels: expected class ids in [0, {self.num_classes}) for the per-class betas, "
                f"got range [{int(labels.min())}, {int(labels.max())}]"
            )
        return self.beta[labels]

    def forward(
        self,
        emb: Tensor,
        labels: Tensor,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
        self_index: Tensor | None = None,
    ) -> Tensor:
        sim, pos, neg = self.pairs(emb, labels, ref_emb, ref_labels, self_index)
        beta = self._anchor_beta(labels.to(emb.device))[:, None].to(sim.dtype)  # (B, 1)
        dist = cosine_to_distance(sim)
        pos_loss = F.relu(dist - beta + self.margin)
        neg_loss = F.relu(beta - dist + self.margin)
        if self.triplets == "all":
            w_pos = pos * neg.sum(1, keepdim=True)  # (a, p) appears once per negative of a
            w_neg = neg * pos.sum(1, keepdim=True)
        else:
            a, p, n = distance_weighted_triplets(
                sim, pos, neg, emb.shape[1], self.generator, self.lower_cutoff, self.upper_cutoff
            )
            w_pos = torch.zeros_like(pos, dtype=torch.long).index_put_(
                (a, p), torch.ones_like(a), accumulate=True
            )
            w_neg = torch.zeros_like(neg, dtype=torch.long).index_put_(
                (a, n), torch.ones_like(a), accumulate=True
            )
        w_pos, w_neg = w_pos.to(sim.dtype), w_neg.to(sim.dtype)
        total = (w_pos * pos_loss).sum() + (w_neg * neg_loss).sum()
        active = (w_pos * (pos_loss > 0)).sum() + (w_neg * (neg_loss > 0)).sum()
        if self.nu > 0:
            total = total + self.nu * (w_pos.sum(1, keepdim=True) * beta).sum()
        return total / active.clamp_min(1.0)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, margin={self.margin}, nu={self.nu}, "
            f"triplets={self.triplets!r}"
        )


@LOSSES.register("margin")
def margin(num_classes: int | None = None, **kwargs: object) -> MarginLoss:
    """Margin loss, Wu et al. defaults: α=0.2, β₀=1.2 learnable per class, distance weighting."""
    return MarginLoss(num_classes, **kwargs)  # type: ignore[arg-type]
