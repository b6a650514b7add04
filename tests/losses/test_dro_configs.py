"""The CUB configs that claim the official DRO code train its losses: DRO-TopK with k = 2K,
DRO-TopK-PN with the official fallback, and the official sampled DRO-KL (not the exact one)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from dro_refs import (
    official_sampled_kl_expectation,
    official_topk,
    official_topk_pn,
    ordered_pair_losses,
)

from dmlkit.config import load_config
from dmlkit.losses.uncertainty import KLPenalty, SampledKL
from dmlkit.training.build import build_loss

CUB = Path(__file__).resolve().parents[2] / "configs" / "cub"


def _official_batch(seed: int, d: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The official scripts' batch: 80 = 16 classes x 5 images."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(80, d, generator=g, dtype=torch.float64), torch.arange(16).repeat(5)


def _loss(name: str, *overrides: str) -> torch.nn.Module:
    config = load_config(CUB / name, list(overrides))
    return build_loss(config.loss, 100, config.model.embedding_dim)


def test_dro_topk_official_config_is_the_official_topk() -> None:
    x, y = _official_batch(0)
    assert _loss("dro_topk_official.yaml")(x, y).item() == pytest.approx(
        official_topk(x, y, 80), rel=1e-9
    )


@pytest.mark.parametrize("k", [100, 200])
def test_dro_topk_pn_official_config_is_the_official_topk_pn(k: int) -> None:
    """K = 100 of the script (160 unique positives per batch: top-K per side), and K = 200 above
    the positives, where the official code takes all positives and 160 hardest negatives."""
    x, y = _official_batch(1)
    loss = _loss("dro_topk_pn_official.yaml", f"loss.options.k={k}")
    assert loss.aggregator.short_side == "match"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = loss(x, y).item()
    assert [str(w.message).startswith("k=") for w in caught] == [True] * (k > 160)
    assert value == pytest.approx(official_topk_pn(x, y, k, base="binomial"), rel=1e-9)


def test_dro_kl_official_config_is_the_sampled_official_kl() -> None:
    """The config's loss draws 4K = 320 ordered pairs from the 4K + 1 = 321 largest weights
    ∝ exp(l/t) - 1: its truncated distribution is the official one, and a run's global seed fixes
    the draws. The exact DRO-KL (``loss.name=dro_kl``) is another loss."""
    loss = _loss("dro_kl_official.yaml")
    uset = loss.aggregator.uncertainty
    assert isinstance(uset, SampledKL) and not loss.aggregator.unique
    assert (uset.t, uset.num_draws, uset.num_keep) == (0.1, 320, 321)
    x, y = _official_batch(2)
    pos_l, neg_l = ordered_pair_losses(x, y)
    losses = torch.cat([pos_l, neg_l])
    q = uset.weights(losses)
    assert (q * losses).sum().item() == pytest.approx(
        official_sampled_kl_expectation(x, y, k_code=80, lam=0.1), rel=1e-9
    )
    torch.manual_seed(5)
    value = loss(x, y).item()
    direct = SampledKL(0.1, 320, 321, torch.Generator().manual_seed(5))(losses)
    assert value == pytest.approx(direct.item(), rel=1e-9)
    # of 6,320 ordered entries the 321 largest and the twin of the 321st (a tie, kept as the
    # official code keeps ties): the 2K + 1 = 161 hardest unique pairs
    assert int((q > 0).sum()) == 322
    exact_loss = _loss("dro_kl_official.yaml", "loss.name=dro_kl", "loss.options={t: 0.1}")
    assert isinstance(exact_loss.aggregator.uncertainty, KLPenalty)
    assert exact_loss(x, y).item() != pytest.approx((q * losses).sum().item(), rel=1e-3)
