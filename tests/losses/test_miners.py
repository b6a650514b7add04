"""Pair miners: loop references for each rule, subset property, determinism."""

from __future__ import annotations

import pytest
import torch

from dmlkit.core import relation_masks
from dmlkit.losses import (
    AllPairsMiner,
    DistanceWeightedPairMiner,
    HardestPairMiner,
    MultiSimilarityMiner,
    SemiHardPairMiner,
    ThresholdMiner,
    TopKPairMiner,
)


def _setup(
    seed: int = 0, b: int = 14
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, 6, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, 4, (b,), generator=g)
    pos, neg = relation_masks(y, y, self_index=torch.arange(b))
    return x @ x.T, pos, neg, y.tolist()


def _rows(mask: torch.Tensor) -> list[set[int]]:
    return [set(torch.nonzero(r).flatten().tolist()) for r in mask]


def test_all_pairs_keeps_everything() -> None:
    s, pos, neg, _ = _setup()
    p, n = AllPairsMiner()(s, pos, neg)
    assert torch.equal(p, pos) and torch.equal(n, neg)


def test_threshold_miner() -> None:
    s, pos, neg, _ = _setup()
    p, n = ThresholdMiner(pos_below=0.3, neg_above=-0.1)(s, pos, neg)
    assert torch.equal(p, pos & (s < 0.3)) and torch.equal(n, neg & (s > -0.1))


@pytest.mark.parametrize("eps", [-0.2, 0.0, 0.1, 0.5])
def test_ms_miner_matches_loop(eps: float) -> None:
    s, pos, neg, _ = _setup(1)
    p, n = MultiSimilarityMiner(eps)(s, pos, neg)
    for i in range(s.shape[0]):
        ps = [j for j in range(s.shape[1]) if pos[i, j]]
        ns = [j for j in range(s.shape[1]) if neg[i, j]]
        if not ps or not ns:
            assert not p[i].any() and not n[i].any()
            continue
        min_p, max_n = min(s[i, ps]), max(s[i, ns])
        assert _rows(p)[i] == {j for j in ps if s[i, j] - eps < max_n}
        assert _rows(n)[i] == {j for j in ns if s[i, j] + eps > min_p}
        # GPW property: mined positives empty iff mined negatives empty
        assert bool(p[i].any()) == bool(n[i].any())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ms_miner_is_strict_at_an_exact_tie(dtype: torch.dtype) -> None:
    """Exactly representable similarities (multiples of 1/8, epsilon 1/8): a positive with
    ``s - eps`` equal to the hardest negative, and a negative with ``s + eps`` equal to the hardest
    positive, are both dropped (strict inequalities, as the official code); one step inside the tie
    they are kept."""
    sim = torch.tensor([[0.75, 0.5, 0.625, 0.375, 0.25]], dtype=dtype)
    pos = torch.tensor([[True, True, False, False, False]])
    neg = ~pos
    p, n = MultiSimilarityMiner(0.125)(sim, pos, neg)
    assert p.tolist() == [[False, True, False, False, False]]  # 0.75 - 0.125 == 0.625: dropped
    assert n.tolist() == [[False, False, True, False, False]]  # 0.375 + 0.125 == 0.5: dropped
    inside = torch.tensor([[0.75 - 2**-10, 0.5, 0.625, 0.375 + 2**-10, 0.25]], dtype=dtype)
    p, n = MultiSimilarityMiner(0.125)(inside, pos, neg)
    assert p.tolist() == [[True, True, False, False, False]]
    assert n.tolist() == [[False, False, True, True, False]]


def test_hardest_and_topk_miners() -> None:
    s, pos, neg, _ = _setup(2)
    hp, hn = HardestPairMiner()(s, pos, neg)
    tp, tn = TopKPairMiner(2, 3)(s, pos, neg)
    for i in range(s.shape[0]):
        ps = sorted((float(s[i, j]), j) for j in range(s.shape[1]) if pos[i, j])
        ns = sorted((-float(s[i, j]), j) for j in range(s.shape[1]) if neg[i, j])
        assert _rows(hp)[i] == {j for _, j in ps[:1]} and _rows(hn)[i] == {j for _, j in ns[:1]}
        assert _rows(tp)[i] == {j for _, j in ps[:2]} and _rows(tn)[i] == {j for _, j in ns[:3]}


@pytest.mark.parametrize("margin", [0.1, 0.3])
def test_semihard_miner_matches_triplet_loop(margin: float) -> None:
    s, pos, neg, _ = _setup(3)
    p, n = SemiHardPairMiner(margin)(s, pos, neg)
    B = s.shape[0]
    for a in range(B):
        triplets = [
            (q, k)
            for q in range(B)
            if pos[a, q]
            for k in range(B)
            if neg[a, k] and s[a, q] - margin < s[a, k] < s[a, q]
        ]
        assert _rows(p)[a] == {q for q, _ in triplets}
        assert _rows(n)[a] == {k for _, k in triplets}


def test_distance_weighted_miner_is_deterministic_and_valid() -> None:
    s, pos, neg, _ = _setup(4, b=32)

    def draw(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return DistanceWeightedPairMiner(
            embedding_dim=6, num_negatives=2, upper_cutoff=None, generator=gen
        )(s, pos, neg)

    p1, n1 = draw(0)
    _p2, n2 = draw(0)
    _, n3 = draw(1)
    assert torch.equal(n1, n2) and torch.equal(p1, pos) and not torch.equal(n1, n3)
    assert not (n1 & ~neg).any()
    assert torch.equal(n1.sum(1), torch.clamp(neg.sum(1), max=2))


def test_distance_weighted_miner_prefers_near_negatives_in_high_dim() -> None:
    # one anchor, negatives at d = 0.5 (s = 0.875) and d = 1.0 (s = 0.5): at D = 128 the near one
    # has essentially all the mass, and everything beyond the upper cutoff is never drawn
    s = torch.tensor([[1.0, 0.875, 0.5, -0.5]], dtype=torch.float64)
    pos = torch.tensor([[False, False, False, False]])
    neg = torch.tensor([[False, True, True, True]])
    gen = torch.Generator().manual_seed(0)
    miner = DistanceWeightedPairMiner(
        embedding_dim=128, num_negatives=1, upper_cutoff=1.4, generator=gen
    )
    picks = [int(torch.nonzero(miner(s, pos, neg)[1][0])[0]) for _ in range(50)]
    assert picks == [1] * 50


@pytest.mark.parametrize(
    "miner",
    [
        ThresholdMiner(0.2, 0.0),
        MultiSimilarityMiner(0.1),
        HardestPairMiner(),
        TopKPairMiner(2, 2),
        SemiHardPairMiner(0.2),
        DistanceWeightedPairMiner(embedding_dim=6, generator=torch.Generator().manual_seed(0)),
    ],
)
def test_miners_only_remove_pairs_and_carry_no_grad(miner: torch.nn.Module) -> None:
    s, pos, neg, _ = _setup(5)
    p, n = miner(s.clone().requires_grad_(True), pos, neg)
    assert p.dtype == torch.bool and n.dtype == torch.bool
    assert not (p & ~pos).any() and not (n & ~neg).any()


def test_bad_miner_arguments() -> None:
    with pytest.raises(ValueError, match="k_pos"):
        TopKPairMiner(0, 1)
    with pytest.raises(ValueError, match="num_negatives"):
        DistanceWeightedPairMiner(embedding_dim=8, num_negatives=0)
    with pytest.raises(ValueError, match="margin"):
        SemiHardPairMiner(-1.0)


def test_top_k_one_is_hardest_and_ties_go_to_the_lower_index() -> None:
    s, pos, neg, _ = _setup(6)
    hp, hn = HardestPairMiner()(s, pos, neg)
    tp, tn = TopKPairMiner(1, 1)(s, pos, neg)
    assert torch.equal(hp, tp) and torch.equal(hn, tn)
    tied = torch.tensor([[0.0, 0.5, 0.5, 0.5, 0.2]], dtype=torch.float64)
    nothing = torch.zeros(1, 5, dtype=torch.bool)
    negs = torch.tensor([[False, True, True, True, True]])
    for k, expected in ((1, [1]), (2, [1, 2]), (10, [1, 2, 3, 4])):
        _, n = TopKPairMiner(1, k)(tied, nothing, negs)
        assert torch.nonzero(n[0]).flatten().tolist() == expected
    # rows without candidates stay empty
    p, n = HardestPairMiner()(tied, nothing, nothing)
    assert not p.any() and not n.any()
