"""Cross-batch memory: PML parity over wrap-around (with miners), self removal, enqueue mask, state."""

from __future__ import annotations

import inspect

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch import Tensor, nn

from dmlkit.losses import LOSSES, create
from dmlkit.losses.margin import MarginLoss
from dmlkit.methods import CrossBatchMemory

D = 8
COS = pml_distances.CosineSimilarity()

# ours, PML loss, PML miner (applied by PML's CrossBatchMemory to batch x memory)
PARITY = {
    "contrastive": (
        lambda: create("contrastive", normalize="sides_nonzero"),
        lambda: pml_losses.ContrastiveLoss(1.0, 0.5, distance=COS),
        None,
    ),
    "ms_mined": (
        lambda: create("ms", beta=50.0, threshold=0.5),
        lambda: pml_losses.MultiSimilarityLoss(2.0, 50.0, 0.5),
        lambda: pml_miners.MultiSimilarityMiner(0.1),
    ),
    "triplet": (
        lambda: create("triplet", margin=0.1),
        lambda: pml_losses.TripletMarginLoss(0.1, distance=COS),
        None,
    ),
    "triplet_semihard": (
        lambda: create("triplet_semihard", margin=0.1),
        lambda: pml_losses.TripletMarginLoss(0.1, distance=COS),
        lambda: pml_miners.TripletMarginMiner(0.1, type_of_triplets="semihard", distance=COS),
    ),
    "triplet_hard_negatives": (
        lambda: create("triplet_hard_negatives", margin=0.1),
        lambda: pml_losses.TripletMarginLoss(0.1, distance=COS),
        lambda: pml_miners.TripletMarginMiner(0.1, type_of_triplets="hard", distance=COS),
    ),
    "triplet_batch_hard": (
        lambda: create("triplet_batch_hard", margin=0.1),
        lambda: pml_losses.TripletMarginLoss(0.1, distance=COS),
        lambda: pml_miners.BatchHardMiner(distance=COS),
    ),
    "margin_all": (
        lambda: MarginLoss(6, nu=0.01, triplets="all"),
        lambda: pml_losses.MarginLoss(0.2, nu=0.01, learn_beta=True, num_classes=6),
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(PARITY))
def test_parity_with_pml_across_wraparound(case: str) -> None:
    ours_f, theirs_f, miner_f = PARITY[case]
    ours = CrossBatchMemory(ours_f(), D, memory_size=64).double()
    theirs = pml_losses.CrossBatchMemory(theirs_f(), D, 64, miner=miner_f() if miner_f else None)
    theirs.double()
    g = torch.Generator().manual_seed(0)
    for _ in range(5):  # 5 x 24 rows > 64: the queue wraps twice
        x = torch.randn(24, D, generator=g, dtype=torch.float64)
        y = torch.randint(0, 6, (24,), generator=g)
        e1, e2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        v1, v2 = ours(e1, y), theirs(e2, y)
        torch.testing.assert_close(v1, v2, rtol=1e-6, atol=1e-12)
        v1.backward()
        v2.backward()
        torch.testing.assert_close(e1.grad, e2.grad, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(ours.embeddings, theirs.embedding_memory)


def test_enqueue_mask_matches_pml() -> None:
    ours = CrossBatchMemory(create("contrastive", normalize="sides_nonzero"), D, 32).double()
    theirs = pml_losses.CrossBatchMemory(pml_losses.ContrastiveLoss(1.0, 0.5, distance=COS), D, 32)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(16, D, generator=g, dtype=torch.float64)
        y = torch.randint(0, 4, (16,), generator=g)
        mask = torch.arange(16) % 2 == 0
        torch.testing.assert_close(ours(x, y, enqueue_mask=mask), theirs(x, y, enqueue_mask=mask))


def _compares_to_references(name: str) -> bool:
    """Losses built without class-sized state: every one but the proxy family, whose factories
    need ``num_classes`` (they compare with their proxies, not with a memory)."""
    param = inspect.signature(LOSSES.get(name)).parameters.get("num_classes")
    return param is None or param.default is not inspect.Parameter.empty


def _takes_views(name: str) -> bool:
    """Losses on augmented views (``loss(emb, ref_emb)``, no labels), and losses whose columns
    must be the batch itself: a labelled memory does not apply to them."""
    loss = create(name)
    return bool(getattr(loss, "views_input", False)) or not getattr(loss, "takes_references", True)


VIEW_LOSSES = [
    name for name in LOSSES.names() if _compares_to_references(name) and _takes_views(name)
]
BATCH_LOSSES = [
    name for name in LOSSES.names() if _compares_to_references(name) and not _takes_views(name)
]
PROXY_LOSSES = [name for name in LOSSES.names() if not _compares_to_references(name)]


def test_loss_families_split_as_expected() -> None:
    assert {"ms", "contrastive", "triplet", "dro_topk", "margin"} <= set(BATCH_LOSSES)
    assert {"proxy_anchor", "proxy_nca", "soft_triple", "normalized_softmax"} <= set(PROXY_LOSSES)
    assert {"vicreg", "self_supervised", "instance"} <= set(VIEW_LOSSES)


@pytest.mark.parametrize("name", PROXY_LOSSES)
def test_proxy_losses_are_refused_with_a_clear_error(name: str) -> None:
    with pytest.raises(TypeError, match="ref_emb"):
        CrossBatchMemory(create(name, num_classes=4, embedding_dim=D), D, 64)


@pytest.mark.parametrize("name", VIEW_LOSSES)
def test_view_losses_are_refused_with_a_clear_error(name: str) -> None:
    with pytest.raises(TypeError, match="self_index"):
        CrossBatchMemory(create(name), D, 64)


@pytest.mark.parametrize("name", BATCH_LOSSES)
def test_first_call_equals_the_loss_on_the_batch(name: str) -> None:
    # with an empty queue the memory is the batch itself: the wrapped loss, miner included, must
    # give exactly what it gives on the batch (self removed by slot in one, by identity in the
    # other); losses that sample draw from the default generator, re-seeded before each call
    x = torch.randn(20, D, dtype=torch.float64)
    y = torch.randint(0, 4, (20,))
    loss = create(name).double()
    torch.manual_seed(1)
    direct = loss(x, y)
    torch.manual_seed(1)
    torch.testing.assert_close(CrossBatchMemory(loss, D, 64).double()(x, y), direct)


def test_margin_loss_with_sampled_triplets_through_memory() -> None:
    x = torch.randn(20, D, dtype=torch.float64)
    y = torch.randint(0, 4, (20,))
    direct = create("margin", num_classes=4, generator=torch.Generator().manual_seed(0)).double()
    wrapped = create("margin", num_classes=4, generator=torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(CrossBatchMemory(wrapped, D, 64).double()(x, y), direct(x, y))


def test_self_comparison_removed_by_position_not_value() -> None:
    # two identical rows with the same label must still be each other's positive pair
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    mem = CrossBatchMemory(create("contrastive", normalize="none"), 2, 8).double()
    direct = create("contrastive", normalize="none")(x, y)
    torch.testing.assert_close(mem(x, y), direct)


def test_batch_weight_adds_the_in_batch_loss() -> None:
    loss = create("triplet")
    plain = CrossBatchMemory(loss, D, 40).double()
    xbm = CrossBatchMemory(loss, D, 40, batch_weight=1.0).double()
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        x = torch.randn(16, D, generator=g, dtype=torch.float64)
        y = torch.randint(0, 4, (16,), generator=g)
        torch.testing.assert_close(xbm(x, y), plain(x, y) + loss(x, y))


def test_memory_works_with_every_loss_and_restores_from_state_dict() -> None:
    g = torch.Generator().manual_seed(2)
    for name in ["ms", "binomial", "lifted", "circle", "triplet_semihard", "triplet_batch_hard"]:
        mem = CrossBatchMemory(create(name), D, 40)
        for _ in range(3):
            x = torch.randn(16, D, generator=g, requires_grad=True)
            value = mem(x, torch.randint(0, 4, (16,), generator=g))
            value.backward()
            assert torch.isfinite(value) and torch.isfinite(x.grad).all()
        clone = CrossBatchMemory(create(name), D, 40)
        clone.load_state_dict(mem.state_dict())
        x = torch.randn(16, D, generator=g)
        y = torch.randint(0, 4, (16,), generator=g)
        torch.testing.assert_close(clone(x, y), mem(x, y))
        assert int(mem.filled) == 40


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_the_queue_in_float32(dtype: torch.dtype) -> None:
    layer = nn.Linear(D, D)
    mem = CrossBatchMemory(create("triplet"), D, 48)
    reference = CrossBatchMemory(create("triplet"), D, 48)
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        inputs, y = torch.randn(16, D, generator=g), torch.randint(0, 4, (16,), generator=g)
        with torch.autocast("cpu", dtype=dtype):
            value = mem(layer(inputs), y)
        value.backward()
        expected = reference(layer(inputs), y)
        assert torch.isfinite(value) and value.dtype == torch.float32
        torch.testing.assert_close(value, expected, rtol=0.05, atol=0.05)
    assert mem.embeddings.dtype == torch.float32


def test_multi_hot_labels_in_memory() -> None:
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 1]])
    x = torch.randn(6, 4, dtype=torch.float64)
    mem = CrossBatchMemory(create("contrastive"), 4, 16, label_dim=3).double()
    torch.testing.assert_close(mem(x, y), create("contrastive")(x, y))
    with pytest.raises(ValueError, match="per-row shape"):
        mem(x, torch.arange(6))


class _NoSelfIndex(nn.Module):
    def forward(self, emb: Tensor, labels: Tensor, ref_emb: Tensor, ref_labels: Tensor) -> Tensor:
        return emb.sum()


def test_bad_inputs() -> None:
    mem = CrossBatchMemory(create("contrastive"), 4, 8)
    with pytest.raises(ValueError, match="embedding_size=4"):
        mem(torch.randn(3, 5), torch.arange(3))
    with pytest.raises(ValueError, match="at most memory_size=8"):
        mem(torch.randn(9, 4), torch.arange(9))
    with pytest.raises(ValueError, match="no query"):
        mem(torch.randn(3, 4), torch.arange(3), enqueue_mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="enqueue_mask"):
        mem(torch.randn(3, 4), torch.arange(3), enqueue_mask=torch.ones(3))
    with pytest.raises(ValueError, match="finite"):
        mem(torch.full((3, 4), float("nan")), torch.arange(3))
    with pytest.raises(TypeError, match="self_index"):
        CrossBatchMemory(_NoSelfIndex(), 4, 8)
    with pytest.raises(ValueError, match="batch_weight"):
        CrossBatchMemory(create("contrastive"), 4, 8, batch_weight=-1.0)
    assert int(mem.filled) == 0  # rejected batches never reach the queue
