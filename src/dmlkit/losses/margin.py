"""Margin loss (Wu et al. 2017, "Sampling Matters in Deep Embedding Learning").

For triplets t = (a, p, n), Euclidean distances ``d = sqrt(2 - 2 s)`` between L2-normalised
embeddings (cosine ``s``) and a boundary ``β`` learnable per class of the anchor (or one global β):

    L = [Σ_t ([d_ap - β_{y_a} + α]_+ + [β_{y_a} - d_an + α]_+) + ν Σ_t β_{y_a}] / #active

The normaliser ``#active`` (``normalize=``):

- ``"active_terms"`` (default): the non-zero hinge terms, positive and negative terms counted
  separately, as in Wu et al.'s code and pytorch-metric-learning's per-class ``MarginLoss``;
- ``"active_triplets"``: the triplets with any non-zero term (``(l+ > 0) | (l- > 0)``), as the
  Revisiting-DML and DiVA code divide (``sum((pos_loss > 0) + (neg_loss > 0))`` of two boolean
  tensors is a logical OR). The loss is then 1 to 2 times the default's, which changes the weight
  of any other term added to it (the decorrelation of the sharing method, weight decay).

With no active term the sum is returned undivided (0 without ``ν``), never a division by zero.
Differences, on purpose: pytorch-metric-learning with ONE global β adds ``ν β`` once and undivided,
and the Revisiting-DML code adds ``ν Σ_t β`` undivided; here ``ν Σ_t β`` is divided like the
hinge terms (one formula, as Wu et al.; every shipped config has ``ν = 0``). PML's default
``learn_beta=False`` is ``True`` here (the method learns β).

Triplets (``triplets=``):

- ``"distance_weighted"`` (default): every positive pair with one negative drawn by
  :class:`~dmlkit.losses.triplet_sampling.DistanceWeightedSampler` (cutoffs 0.5 / 1.4, explicit
  ``generator``); ``per_anchor=True``: one triplet per anchor with a uniform positive (the
  Revisiting-DML code's rule; the same in distribution with 2 images per class). The Revisiting-DML
  and DiVA code have the upper cutoff commented out: ``upper_cutoff=None`` there;
- ``"all"``: every triplet of the batch, computed from pairs weighted by their multiplicities
  (a positive pair appears ``|N_a|`` times, a negative pair ``|P_a|`` times), never B x B x R;
- any :class:`~dmlkit.losses.triplet_sampling.TripletSampler` callable;
- or pass ``triplets=(a, p, n)`` to ``forward`` to score given triplets (the relations of the
  given indices are not checked: shared-characteristics triplets pair different classes).

The betas are an ``nn.Parameter`` kept in float32 (also under autocast, since distances are float32);
give them their own learning rate with :meth:`MarginLoss.param_groups`. Memory O(B R).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmlkit.core.checks import check_positive
from dmlkit.core.relations import RelationFn
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.inputs import LossInputs
from dmlkit.losses.registry import LOSSES
from dmlkit.losses.triplet_sampling import (
    DistanceWeightedSampler,
    TripletSampler,
    cosine_to_distance,
)

Triplets = tuple[Tensor, Tensor, Tensor]
NORMALIZERS = ("active_terms", "active_triplets")


def check_triplets(triplets: object, num_rows: int, num_ref: int) -> Triplets:
    """Validate ``(a, p, n)``: three int64 tensors of one length ``T``, ``a`` in ``[0, num_rows)``,
    ``p`` and ``n`` in ``[0, num_ref)``."""
    if not (isinstance(triplets, tuple | list) and len(triplets) == 3):
        raise TypeError(f"triplets: expected a tuple (a, p, n) of 3 tensors, got {triplets!r}")
    if not all(isinstance(t, Tensor) for t in triplets):
        raise TypeError("triplets: expected (a, p, n) to be torch.Tensors")
    a, p, n = triplets
    for name, t in (("a", a), ("p", p), ("n", n)):
        if t.dtype != torch.long or t.ndim != 1:
            raise TypeError(
                f"triplets: expected {name} to be an int64 tensor of shape (T,), "
                f"got {t.dtype} {tuple(t.shape)}"
            )
    if not a.shape == p.shape == n.shape:
        raise ValueError(
            f"triplets: expected a, p, n of one length, got {a.numel()}, {p.numel()}, {n.numel()}"
        )
    for name, t, bound in (("a", a, num_rows), ("p", p, num_ref), ("n", n, num_ref)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= bound):
            raise ValueError(
                f"triplets: expected {name} in [0, {bound}), "
                f"got range [{int(t.min())}, {int(t.max())}]"
            )
    return a, p, n


class MarginLoss(BatchLoss):
    """Margin loss with per-class (``num_classes``) or global learnable boundary β.

    ``forward(emb (B, D), labels (B,), ref_emb (R, D) = None, ref_labels = None,
    self_index = None, triplets = None) -> 0-dim loss``.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        margin: float = 0.2,
        beta_init: float = 1.2,
        learn_beta: bool = True,
        nu: float = 0.0,
        triplets: Literal["distance_weighted", "all"] | TripletSampler = "distance_weighted",
        generator: torch.Generator | None = None,
        lower_cutoff: float = 0.5,
        upper_cutoff: float | None = 1.4,
        relation_fn: RelationFn | None = None,
        normalize: Literal["active_terms", "active_triplets"] = "active_terms",
        per_anchor: bool = False,
    ) -> None:
        super().__init__("cosine", relation_fn)
        if normalize not in NORMALIZERS:
            raise ValueError(f"normalize: expected one of {NORMALIZERS}, got {normalize!r}")
        self.normalize = normalize
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1 or None, got {num_classes}")
        self.num_classes = num_classes
        self.margin = check_positive(margin, "margin", allow_zero=True)
        self.nu = check_positive(nu, "nu", allow_zero=True)
        self.sampler: TripletSampler | None
        if triplets == "all":
            self.sampler = None
        elif triplets == "distance_weighted":
            self.sampler = DistanceWeightedSampler(
                lower_cutoff, upper_cutoff, generator, per_anchor
            )
        elif callable(triplets):
            self.sampler = triplets
        else:
            raise ValueError(
                f"triplets: expected 'distance_weighted', 'all' or a sampler callable, "
                f"got {triplets!r}"
            )
        beta = torch.full((num_classes or 1,), float(beta_init), dtype=torch.float32)
        self.beta = nn.Parameter(beta, requires_grad=learn_beta)

    def param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict[str, object]]:
        """One optimizer group for the betas (Wu et al. train them with their own rate)."""
        return [{"params": [self.beta], "lr": lr, "weight_decay": weight_decay}]

    def _anchor_beta(self, labels: Tensor) -> Tensor:
        """β of each row ``(B,)`` in float32."""
        if self.num_classes is None:
            return self.beta.expand(labels.shape[0])
        if labels.ndim != 1:
            raise ValueError(
                f"labels: per-class betas need class ids of shape (B,), got {tuple(labels.shape)}"
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"labels: expected class ids in [0, {self.num_classes}) for the per-class betas, "
                f"got range [{int(labels.min())}, {int(labels.max())}]"
            )
        return self.beta[labels]

    def from_similarity(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """Not available: β is chosen by the anchors' labels and sampling needs the dimension."""
        raise TypeError(
            "MarginLoss: expected forward(emb, labels, ...) (beta depends on the anchors' labels "
            "and distance weighting on the embedding dimension), got from_similarity(S, pos, neg)"
        )

    def forward(
        self,
        emb: Tensor,
        labels: Tensor,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
        self_index: Tensor | None = None,
        triplets: Triplets | None = None,
    ) -> Tensor:
        sim, pos, neg = self.pairs_of(LossInputs(emb, labels, ref_emb, ref_labels, self_index))
        beta = self._anchor_beta(labels.to(emb.device)).to(sim.dtype)  # (B,)
        if triplets is None and self.sampler is not None:
            triplets = self.sampler(cosine_to_distance(sim.detach()), pos, neg, emb.shape[1])
        if triplets is None:
            total, active = self._all_triplets(sim, pos, neg, beta)
        else:
            total, active = self._given_triplets(sim, beta, *check_triplets(triplets, *sim.shape))
        connect = 0.0 * sim.sum() + 0.0 * self.beta.sum()  # zero gradients when nothing is active
        return connect + total / active.clamp_min(1.0)

    def _hinges(self, dist_ap: Tensor, dist_an: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
        return F.relu(dist_ap - beta + self.margin), F.relu(beta - dist_an + self.margin)

    def _given_triplets(
        self, sim: Tensor, beta: Tensor, a: Tensor, p: Tensor, n: Tensor
    ) -> tuple[Tensor, Tensor]:
        beta_t = beta[a]
        pos_loss, neg_loss = self._hinges(
            cosine_to_distance(sim[a, p]), cosine_to_distance(sim[a, n]), beta_t
        )
        total = (pos_loss + neg_loss).sum() + self.nu * beta_t.sum()
        if self.normalize == "active_triplets":
            active = ((pos_loss > 0) | (neg_loss > 0)).sum()
        else:
            active = (pos_loss > 0).sum() + (neg_loss > 0).sum()
        return total, active.to(sim.dtype)

    def _all_triplets(
        self, sim: Tensor, pos: Tensor, neg: Tensor, beta: Tensor
    ) -> tuple[Tensor, Tensor]:
        dist = cosine_to_distance(sim)
        pos_loss, neg_loss = self._hinges(dist, dist, beta[:, None])
        w_pos = (pos * neg.sum(dim=1, keepdim=True)).to(sim.dtype)  # (a, p) once per negative
        w_neg = (neg * pos.sum(dim=1, keepdim=True)).to(sim.dtype)  # (a, n) once per positive
        total = (w_pos * pos_loss).sum() + (w_neg * neg_loss).sum()
        total = total + self.nu * (w_pos.sum(dim=1) * beta).sum()
        if self.normalize == "active_triplets":
            # triplets of anchor a: |P_a| |N_a|, of which (inactive l+) x (inactive l-) are inactive
            idle_pos = (pos & (pos_loss <= 0)).sum(dim=1)
            idle_neg = (neg & (neg_loss <= 0)).sum(dim=1)
            triplets = pos.sum(dim=1) * neg.sum(dim=1)
            return total, (triplets - idle_pos * idle_neg).sum().to(sim.dtype)
        active = (w_pos * (pos_loss > 0)).sum() + (w_neg * (neg_loss > 0)).sum()
        return total, active

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, margin={self.margin}, nu={self.nu}, "
            f"normalize={self.normalize!r}, sampler={self.sampler!r}"
        )


@LOSSES.register(
    "margin", family="triplet", source="Wu et al. 2017, margin loss", context=("num_classes",)
)
def margin(num_classes: int | None = None, **kwargs: object) -> MarginLoss:
    """Margin loss, Wu et al. defaults: α=0.2, β₀=1.2 learnable per class, distance weighting."""
    return MarginLoss(num_classes, **kwargs)  # type: ignore[arg-type]
