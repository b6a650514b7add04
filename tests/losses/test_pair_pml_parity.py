"""Parity with pytorch-metric-learning at matching settings (float64, values and gradients)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from dmlkit.losses import create
from tests.losses.grads import value_and_grad

LP = pml_distances.LpDistance(normalize_embeddings=False)


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(48, 16, generator=g, dtype=torch.float64)
    y = torch.randint(0, 8, (48,), generator=g)
    return x, y


CASES: dict[str, tuple[Callable, Callable]] = {
    "contrastive": (
        lambda: create("contrastive", pos_margin=1.0, neg_margin=0.5, normalize="sides_nonzero"),
        lambda: pml_losses.ContrastiveLoss(1.0, 0.5, distance=pml_distances.CosineSimilarity()),
    ),
    "ms_no_miner": (
        lambda: create("ms", alpha=2.0, beta=50.0, threshold=0.5, epsilon=None),
        lambda: pml_losses.MultiSimilarityLoss(2.0, 50.0, 0.5),
    ),
    "generalized_lifted": (
        lambda: create("lifted", pos_margin=-0.0, neg_margin=-1.0, similarity="neg_euclidean"),
        lambda: pml_losses.GeneralizedLiftedStructureLoss(
            neg_margin=1.0, pos_margin=0.0, distance=LP
        ),
    ),
    "lifted_song": (
        lambda: create("lifted_song", margin=1.0),
        lambda: pml_losses.LiftedStructureLoss(neg_margin=1.0, pos_margin=0.0, distance=LP),
    ),
    "circle": (
        lambda: create("circle", m=0.4, gamma=80.0, reduction="mean_nonzero"),
        lambda: pml_losses.CircleLoss(0.4, 80),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_pml(case: str, seed: int) -> None:
    ours_factory, theirs_factory = CASES[case]
    ours, theirs = ours_factory(), theirs_factory()
    x, y = _batch(seed)
    v1, g1 = value_and_grad(lambda e: ours(e, y), x)
    v2, g2 = value_and_grad(lambda e: theirs(e, y), x)
    torch.testing.assert_close(v1, v2, rtol=1e-4, atol=1e-10)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta,threshold", [(50.0, 0.5), (40.0, 0.5)])
def test_ms_with_miner_matches_pml_loss_plus_miner(
    seed: int, beta: float, threshold: float
) -> None:
    x, y = _batch(seed)
    ours = create("ms", alpha=2.0, beta=beta, threshold=threshold, epsilon=0.1)
    loss, miner = (
        pml_losses.MultiSimilarityLoss(2.0, beta, threshold),
        pml_miners.MultiSimilarityMiner(0.1),
    )
    v1, g1 = value_and_grad(lambda e: ours(e, y), x)
    v2, g2 = value_and_grad(lambda e: loss(e, y, miner(e, y)), x)
    torch.testing.assert_close(v1, v2, rtol=1e-4, atol=1e-10)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_npair_matches_pml_on_one_pair_per_class(seed: int) -> None:
    # PML's NPairsLoss keeps one (anchor, positive) pair per class and scores every anchor against
    # every positive; ours sees the same when the positives are the reference set. PML 2.x
    # normalises inside DotProductSimilarity, so compare with our cosine variant.
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(20, 8, generator=g, dtype=torch.float64)
    y = torch.arange(10).repeat_interleave(2)
    ours = create("npair", similarity="cosine")
    v1, g1 = value_and_grad(lambda e: ours(e[0::2], y[0::2], e[1::2], y[1::2]), x)
    v2, g2 = value_and_grad(lambda e: pml_losses.NPairsLoss()(e, y), x)
    torch.testing.assert_close(v1, v2, rtol=1e-4, atol=1e-10)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-10)


def test_ms_paper_defaults_differ_from_pml_defaults_on_purpose() -> None:
    x, y = _batch(0)
    paper = create("ms")  # α=2, β=50, λ=1, ε=0.1
    assert (paper.aggregator.scale_neg, paper.term.pos_margin) == (50.0, 1.0)
    assert not torch.isclose(paper(x, y), pml_losses.MultiSimilarityLoss()(x, y))
