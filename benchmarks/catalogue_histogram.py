"""Catalogue cases: the histogram, dynamic soft margin and manifold losses, and the pair miners of
:mod:`dmlkit.losses.miners_more` (each with the same contrastive loss on both sides), beside
pytorch-metric-learning (PML) at matching settings. See :mod:`benchmarks.catalogue`.

Miner cases (``miner_*``) time the miner and the loss together: ours is
``create("contrastive", normalize="sides_nonzero", miner=...)``, PML's ``ContrastiveLoss(pos_margin=1,
neg_margin=0.5, distance=CosineSimilarity())`` fed its miner's index tuple, the same loss.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances, losses, miners

from benchmarks.catalogue import Case, LossFn
from dmlkit.losses import MINERS, create

COS = distances.CosineSimilarity


def _pml_dsm() -> LossFn:
    """PML's dynamic soft margin with its histogram update fed detached values: as shipped, its
    histogram keeps the autograd graph and the second backward step raises."""
    loss = losses.DynamicSoftMarginLoss(momentum=1.0)
    update = loss.update_histogram
    loss.update_histogram = lambda data: update(data.detach())  # type: ignore[method-assign]
    return loss


def _manifold(classes: int, dim: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create("manifold", num_classes=classes, embedding_dim=dim)


def _pml_manifold(classes: int, dim: int) -> LossFn:
    loss = losses.ManifoldLoss(l=dim, K=classes)
    loss.proxies.data = _manifold(classes, dim).proxies.weight.detach().clone()
    return lambda emb, labels: loss(emb, None, indices_tuple=labels)


def _ours_mined(name: str, **options: object) -> LossFn:
    return create("contrastive", normalize="sides_nonzero", miner=MINERS.create(name, **options))


def _pml_mined(miner: torch.nn.Module) -> LossFn:
    loss = losses.ContrastiveLoss(pos_margin=1.0, neg_margin=0.5, distance=COS())
    return lambda emb, labels: loss(emb, labels, miner(emb, labels))


CASES: dict[str, Case] = {
    "histogram": Case(
        ours=lambda classes, dim: create("histogram", num_bins=100),
        peer=lambda classes, dim: losses.HistogramLoss(n_bins=100),
        note="same values when every class has two items in the batch",
    ),
    "dynamic_soft_margin": Case(
        ours=lambda classes, dim: create("dynamic_soft_margin", momentum=1.0),
        peer=lambda classes, dim: _pml_dsm(),
        note="momentum 1 (PML mixes raw counts otherwise); PML's histogram update detached",
    ),
    "manifold": Case(
        ours=_manifold,
        peer=_pml_manifold,
        note="one proxy per class, labels as PML's meta-class assignment; PML inverts in float32",
    ),
    "miner_pair_margin": Case(
        ours=lambda classes, dim: _ours_mined("pair_margin", pos_margin=0.8, neg_margin=0.2),
        peer=lambda classes, dim: _pml_mined(miners.PairMarginMiner(0.8, 0.2, distance=COS())),
    ),
    "miner_batch_easy_hard": Case(
        ours=lambda classes, dim: _ours_mined("batch_easy_hard"),
        peer=lambda classes, dim: _pml_mined(miners.BatchEasyHardMiner(distance=COS())),
    ),
    "miner_hdc": Case(
        ours=lambda classes, dim: _ours_mined("hdc", filter_percentage=0.3),
        peer=lambda classes, dim: _pml_mined(miners.HDCMiner(0.3, distance=COS())),
        note="pairs tied between (i, j) and (j, i) may be cut differently at the boundary",
    ),
    "miner_angular": Case(
        ours=lambda classes, dim: _ours_mined("angular", angle=20.0),
        peer=lambda classes, dim: _pml_mined(miners.AngularMiner(20.0)),
        note="same kept pairs on unit-norm input; PML's loss counts a pair once per kept triplet",
    ),
    "miner_uniform_histogram": Case(
        ours=lambda classes, dim: _ours_mined("uniform_histogram", num_bins=20),
        peer=lambda classes, dim: _pml_mined(
            miners.UniformHistogramMiner(num_bins=20, distance=COS())
        ),
        note="random pairs: PML draws with replacement, ours without; values differ",
    ),
}
