"""Benchmark cases of the losses on augmented views (VICReg, the self-supervised wrapper) beside
their pytorch-metric-learning (PML) peers (see :mod:`benchmarks.catalogue`).

A case's callables take ``(emb (B, D), labels)``; these losses take two views of the same items
instead, so both sides use the first and second halves of the batch as the two views of ``B // 2``
items and ignore the labels.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from benchmarks.catalogue import Case, LossFn
from dmlkit.losses import SelfSupervisedLoss, create


def _halves(emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    half = emb.shape[0] // 2
    return emb[:half], emb[half : 2 * half]


def _ours_vicreg() -> LossFn:
    loss = create("vicreg")
    return lambda emb, labels: loss(*_halves(emb))


def _peer_vicreg() -> LossFn:
    loss = pml_losses.VICRegLoss()

    def run(emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        first, second = _halves(emb)
        result: torch.Tensor = loss(first, ref_emb=second)
        return result

    return run


def _ours_wrapped() -> LossFn:
    loss = SelfSupervisedLoss(create("contrastive", normalize="sides_nonzero"))
    return lambda emb, labels: loss(*_halves(emb))


def _peer_wrapped() -> LossFn:
    inner = pml_losses.ContrastiveLoss(1.0, 0.5, distance=pml_distances.CosineSimilarity())
    loss = pml_losses.SelfSupervisedLoss(inner)
    return lambda emb, labels: loss(*_halves(emb))


CASES: dict[str, Case] = {
    "vicreg": Case(
        ours=lambda classes, dim: _ours_vicreg(),
        peer=lambda classes, dim: _peer_vicreg(),
        note="views: the two halves of the batch; labels unused",
    ),
    "self_supervised_contrastive": Case(
        ours=lambda classes, dim: _ours_wrapped(),
        peer=lambda classes, dim: _peer_wrapped(),
        note="views: the two halves of the batch; labels unused; symmetric (pooled views)",
    ),
}
