"""Pair losses in row blocks (``chunk_size``): the same value and gradient as in one piece for every
registered loss that accepts it, a stated reason for every one that does not, O(chunk x R)
similarity blocks forward and backward, random miners mined once per block."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import Tensor

from dmlkit.config import ConfigError, LossConfig
from dmlkit.losses import (
    LOSSES,
    DistanceWeightedPairMiner,
    LinearTerm,
    PairLoss,
    PairMiner,
    PairSumAggregator,
    create,
)
from dmlkit.training.build import build_loss

pytestmark = pytest.mark.filterwarnings("ignore:k=.* exceeds the .* pairs available")


def make(name: str) -> torch.nn.Module:
    params = inspect.signature(LOSSES.get(name)).parameters
    context = {"num_classes": 4, "embedding_dim": 5}
    torch.manual_seed(0)
    return create(name, **{k: v for k, v in context.items() if k in params})


def accepts_chunks(name: str) -> bool:
    loss = make(name)
    if not isinstance(loss, PairLoss):
        return False
    try:
        loss.chunked(2)
    except ValueError:
        return False
    return True


NAMES = LOSSES.names()
CHUNKED = [n for n in NAMES if accepts_chunks(n)]
REFUSED = [n for n in NAMES if isinstance(make(n), PairLoss) and n not in CHUNKED]


def test_the_split_covers_the_engine() -> None:
    # every pair-engine loss whose aggregator sums over anchors, and the ones that cannot
    assert {"contrastive", "binomial", "ms", "circle", "npair", "supcon", "ntxent", "nca"} <= set(
        CHUNKED
    )
    assert {"lifted_song", "dro_topk", "dro_kl", "intra_pair_variance", "instance"} <= set(REFUSED)


def data(seed: int, size: int = 13, multi_hot: bool = False) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 5, generator=g, dtype=torch.float64)
    if multi_hot:
        return x, (torch.rand(size, 4, generator=g) < 0.4).long()
    return x, torch.randint(0, 4, (size,), generator=g)


def grads(loss: torch.nn.Module, *inputs: Tensor, **kw: Tensor) -> tuple[Tensor, ...]:
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    value = loss(leaves[0], kw["labels"], *(leaves[1:] or []), *kw.get("rest", ()))
    return (value.detach(), *torch.autograd.grad(value, leaves))


def assert_same(a: tuple[Tensor, ...], b: tuple[Tensor, ...]) -> None:
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", CHUNKED)
@pytest.mark.parametrize("chunk", [1, 4, 12])
def test_chunked_equals_unchunked(name: str, chunk: int) -> None:
    x, y = data(0)
    whole, blocks = make(name), make(name).chunked(chunk)
    assert_same(grads(blocks, x, labels=y), grads(whole, x, labels=y))


@pytest.mark.parametrize("name", CHUNKED)
def test_chunked_equals_unchunked_with_ref_emb(name: str) -> None:
    x, y = data(1)
    r, ry = data(2, size=9)
    whole, blocks = make(name), make(name).chunked(5)
    expected = grads(whole, x, r, labels=y, rest=(ry,))
    assert_same(grads(blocks, x, r, labels=y, rest=(ry,)), expected)


@pytest.mark.parametrize("name", CHUNKED)
def test_chunked_equals_unchunked_with_a_memory_and_multi_hot_labels(name: str) -> None:
    x, y = data(3, multi_hot=True)
    bank, bank_y = data(4, size=6, multi_hot=True)
    ref_y = torch.cat([y, bank_y])
    index = torch.arange(13)  # the batch sits at the front of the memory

    def run(loss: torch.nn.Module) -> tuple[Tensor, ...]:
        e = x.clone().requires_grad_(True)
        value = loss(e, y, torch.cat([e, bank]), ref_y, index)
        return value.detach(), *torch.autograd.grad(value, [e])

    assert_same(run(make(name).chunked(3)), run(make(name)))


@pytest.mark.parametrize("name", ["supcon", "ms", "tuplet_margin", "snr_contrastive"])
def test_gradcheck_in_blocks(name: str) -> None:
    x, _ = data(5, size=7)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 0])
    loss = make(name).chunked(3)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x,))


@pytest.mark.parametrize("name", ["supcon", "binomial", "tcm"])
def test_without_grad_and_under_autocast(name: str) -> None:
    x, y = data(6)
    whole, blocks = make(name), make(name).chunked(4)
    with torch.no_grad():
        torch.testing.assert_close(blocks(x, y), whole(x, y), rtol=1e-10, atol=1e-13)
    emb = x.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = blocks(emb, y), whole(emb, y)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", REFUSED)
def test_refusals_name_the_reason(name: str) -> None:
    loss = make(name)
    with pytest.raises(ValueError, match="chunk_size: expected") as info:
        loss.chunked(4)
    blocker = getattr(loss.aggregator, "chunk_blocker", None)
    assert blocker is None or blocker in str(info.value)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_chunk_size_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="chunk_size: expected an int >= 1 or None"):
        create("supcon").chunked(bad)
    with pytest.raises(ValueError, match="chunk_size: expected an int >= 1 or None"):
        PairLoss(LinearTerm(), PairSumAggregator(), chunk_size=bad)


def test_no_block_is_larger_than_the_chunk_and_the_backward_recomputes() -> None:
    x, y = data(7, size=20)
    loss = create("ms").chunked(6)
    shapes: list[tuple[int, ...]] = []
    loss.similarity.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape)))
    x.requires_grad_(True)
    loss(x, y).backward()
    # four blocks (6, 6, 6, 2 rows) against all 20 columns, each once forward, once in backward
    assert sorted(shapes) == sorted([(6, 20)] * 6 + [(2, 20)] * 2)


class CountingRandomMiner(PairMiner):
    """Keeps each labelled pair with probability 1/2 (explicit generator); records its masks."""

    deterministic = False

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)
        self.drawn: list[tuple[Tensor, Tensor]] = []

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        keep = torch.rand(sim.shape, generator=self.generator, dtype=sim.dtype) < 0.5
        self.drawn.append((pos & keep, neg & keep))
        return self.drawn[-1]


def test_a_random_miner_is_mined_once_per_block_and_the_gradient_uses_those_pairs() -> None:
    x, y = data(8, size=11)
    miner = CountingRandomMiner(0)
    loss = create("contrastive", normalize="none", miner=miner).chunked(4)
    e = x.clone().requires_grad_(True)
    value = loss(e, y)
    (grad,) = torch.autograd.grad(value, e)
    assert len(miner.drawn) == 3  # no draw again when the backward recomputes a block
    plain = create("contrastive", normalize="none")  # a plain sum: blocks add up
    e2 = x.clone().requires_grad_(True)
    rows = [slice(0, 4), slice(4, 8), slice(8, 11)]
    expected = sum(
        plain.from_similarity(plain.similarity(e2[r], e2), *masks)
        for r, masks in zip(rows, miner.drawn, strict=True)
    )
    assert isinstance(expected, Tensor)
    (grad2,) = torch.autograd.grad(expected, e2)
    torch.testing.assert_close(value.detach(), expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad2, rtol=1e-12, atol=1e-12)


def test_distance_weighted_miner_declares_itself_random() -> None:
    assert not DistanceWeightedPairMiner(embedding_dim=5).deterministic
    assert create("ms").miner.deterministic


def test_config_chunk_size() -> None:
    loss = build_loss(LossConfig(name="supcon", chunk_size=8), num_classes=4, embedding_dim=5)
    assert isinstance(loss, PairLoss) and loss.chunk_size == 8
    with pytest.raises(ConfigError, match=r"loss\.chunk_size: .*each positive pair"):
        build_loss(LossConfig(name="lifted_song", chunk_size=8), 4, 5)
    with pytest.raises(ConfigError, match=r"loss\.chunk_size: expected a pair-engine loss"):
        build_loss(LossConfig(name="triplet", chunk_size=8), 4, 5)
