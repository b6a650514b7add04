"""Every pair preset: loop reference, gradcheck, invariances, edge cases, autocast."""

from __future__ import annotations

import math

import pytest
import torch
from pair_refs import REFERENCES

from dmlkit.losses import LOSSES, PairLoss, ThresholdMiner, create

PRESETS = sorted(REFERENCES)
# presets whose pairs are charged independently (no anchor needs both a positive and a negative)
PAIRWISE_INDEPENDENT = {"contrastive", "contrastive_hadsell", "binomial"}


def test_every_classic_preset_is_registered_and_has_a_reference() -> None:
    classic = {n for n in LOSSES.names() if LOSSES.get(n).__module__ == "dmlkit.losses.presets"}
    assert classic == set(PRESETS)
    assert all(isinstance(create(n), PairLoss) for n in PRESETS)


def hand_placed() -> tuple[torch.Tensor, list[int]]:
    """Eight 2-D points at fixed angles, four classes of two (PML-style hand placement)."""
    angles = [0, 20, 40, 70, 100, 150, 200, 300]
    pts = [[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in angles]
    scale = [1.0, 0.7, 1.3, 1.0, 0.9, 1.1, 1.0, 0.8]  # off the unit circle: distances matter
    x = torch.tensor([[p[0] * c, p[1] * c] for p, c in zip(pts, scale, strict=True)])
    return x.double(), [0, 0, 1, 1, 2, 2, 3, 0]


@pytest.mark.parametrize("name", PRESETS)
def test_matches_loop_reference_hand_placed(name: str) -> None:
    x, y = hand_placed()
    ours = create(name)(x, torch.tensor(y)).item()
    assert ours == pytest.approx(REFERENCES[name](x, y), rel=1e-9, abs=1e-12)
    assert ours > 0  # the hand-placed batch is not trivially solved for any preset


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference_random(name: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (12,), generator=g).tolist()
    ours = create(name)(x, torch.tensor(y)).item()
    assert ours == pytest.approx(REFERENCES[name](x, y), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", PRESETS)
def test_gradcheck(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    loss = create(name)
    if name == "circle":
        # circle holds its self-paced weights constant: check the gradient at those fixed weights
        fixed = (
            torch.nn.functional.normalize(x.detach(), dim=1)
            @ torch.nn.functional.normalize(x.detach(), dim=1).T
        )
        term = loss.term
        term.forward = lambda sim: term.logits(sim, fixed)  # type: ignore[method-assign]
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", PRESETS)
def test_permutation_and_label_renaming_invariance(name: str) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(16, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (16,), generator=g)
    loss = create(name)
    base = loss(x, y)
    perm = torch.randperm(16, generator=g)
    torch.testing.assert_close(loss(x[perm], y[perm]), base)
    torch.testing.assert_close(loss(x, y * 7 + 100), base)


@pytest.mark.parametrize("name", PRESETS)
def test_ref_equal_to_batch_is_the_batch(name: str) -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.randn(10, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=g)
    loss = create(name)
    torch.testing.assert_close(loss(x, y, x, y), loss(x, y))


def _assert_zero_connected(loss_value: torch.Tensor, x: torch.Tensor) -> None:
    assert loss_value.ndim == 0 and loss_value.requires_grad
    assert loss_value.item() == 0.0
    (grad,) = torch.autograd.grad(loss_value, x)
    assert torch.equal(grad, torch.zeros_like(x))


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("case", ["no_positives", "one_class", "single_item"])
def test_degenerate_batches_give_connected_zero(name: str, case: str) -> None:
    g = torch.Generator().manual_seed(1)
    n = 1 if case == "single_item" else 6
    x = torch.randn(n, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.arange(n) if case != "one_class" else torch.zeros(n, dtype=torch.long)
    value = create(name)(x, y)
    if case != "single_item" and name in PAIRWISE_INDEPENDENT:
        # each pair is charged on its own: one side alone still carries a (finite) loss
        assert value.item() > 0 and torch.isfinite(value)
        (grad,) = torch.autograd.grad(value, x)
        assert torch.isfinite(grad).all()
        return
    _assert_zero_connected(value, x)


SOLVED = {
    # name: (kwargs, points) such that every active term of the preset is exactly zero
    "contrastive": ({"pos_margin": 0.5, "neg_margin": 0.5}, [[1, 0], [1, 0], [0, 1], [0, 1]]),
    # log 1 + log(2 e^{-1}) < 0: the hinge of every anchor is inactive
    "lifted": ({}, [[1, 0], [1, 0], [-1, 0], [-1, 0]]),
    # log(4 e^{1 - 6}) + d_ij < 0 for every positive pair
    "lifted_song": ({}, [[3, 0], [3, 0], [-3, 0], [-3, 0]]),
    # ε-mining keeps nothing when every positive beats every negative by more than ε
    "ms": ({}, [[1, 0], [1, 0], [0, 1], [0, 1]]),
    "ms_official": ({}, [[1, 0], [1, 0], [0, 1], [0, 1]]),
}


@pytest.mark.parametrize("name", sorted(SOLVED))
def test_all_terms_zero_gives_connected_zero(name: str) -> None:
    kwargs, points = SOLVED[name]
    x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    _assert_zero_connected(create(name, **kwargs)(x, torch.tensor([0, 0, 1, 1])), x)


@pytest.mark.parametrize("name", PRESETS)
def test_every_pair_mined_out_gives_connected_zero(name: str) -> None:
    # the presets whose terms never vanish (softplus, log(1 + ...)) reach 0 only this way
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    if name.startswith("ms"):
        loss = create(name, epsilon=-10.0)  # ε-mining with ε = -10 keeps no pair
    else:
        loss = create(name, miner=ThresholdMiner(pos_below=-1e9, neg_above=1e9))
    _assert_zero_connected(loss(x, y), x)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_stays_finite_and_close(name: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(2)
    inputs = torch.randn(32, 16, generator=g)
    layer = torch.nn.Linear(16, 8)
    y = torch.randint(0, 6, (32,), generator=g)
    loss = create(name)
    reference = loss(layer(inputs), y)
    with torch.autocast("cpu", dtype=dtype):
        emb = layer(inputs)
        assert emb.dtype == dtype
        value = loss(emb, y)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    torch.testing.assert_close(value, reference, rtol=0.05, atol=0.05)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("name", PRESETS)
def test_float32_embeddings_give_the_same_loss_inside_autocast(name: str) -> None:
    # S is float32 either way: no op of the engine may be cast down by autocast
    g = torch.Generator().manual_seed(8)
    x = torch.randn(24, 8, generator=g)
    y = torch.randint(0, 4, (24,), generator=g)
    loss = create(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(x, y)
    torch.testing.assert_close(inside, loss(x, y), rtol=1e-6, atol=1e-7)


def test_lifted_song_refuses_a_separate_reference() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="square"):
        create("lifted_song")(x, torch.tensor([0, 0, 1, 1]), torch.randn(5, 3), torch.arange(5))


def test_multi_hot_and_relation_fn_reach_the_engine() -> None:
    x = torch.randn(6, 4, dtype=torch.float64)
    multi_hot = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0], [0, 1]])
    loss = create("contrastive", normalize="pairs")
    value = loss(x, multi_hot)
    # the same relation given as a function of integer ids
    ids = torch.arange(6)

    def relation(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        share = (multi_hot[a].double() @ multi_hot[b].double().T) > 0
        return share, ~share

    by_fn = create("contrastive", normalize="pairs", relation_fn=relation)(x, ids)
    torch.testing.assert_close(value, by_fn)
