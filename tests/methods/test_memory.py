"""Cross-batch memory: PML parity over ring-buffer wrap-around, self removal, enqueue mask, state."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from dmlkit.losses import create
from dmlkit.methods import CrossBatchMemory

D = 8
COS = pml_distances.CosineSimilarity()

PAIRS = {
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
}


@pytest.mark.parametrize("case", sorted(PAIRS))
def test_parity_with_pml_across_wraparound(case: str) -> None:
    ours_f, theirs_f, miner_f = PAIRS[case]
    ours = CrossBatchMemory(ours_f(), D, memory_size=64).double()
    theirs = pml_losses.CrossBatchMemory(theirs_f(), D, 64, miner=miner_f() if miner_f else None)
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


def test_enqueue_mask_matches_pml() -> None:
    ours = CrossBatchMemory(create("contrastive", normalize="sides_nonzero"), D, 32).double()
    theirs = pml_losses.CrossBatchMemory(pml_losses.ContrastiveLoss(1.0, 0.5, distance=COS), D, 32)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(16, D, generator=g, dtype=torch.float64)
        y = torch.randint(0, 4, (16,), generator=g)
        mask = torch.arange(16) % 2 == 0
        torch.testing.assert_close(ours(x, y, enqueue_mask=mask), theirs(x, y, enqueue_mask=mask))


def test_self_comparison_removed_by_position_not_value() -> None:
    # two identical rows with the same label must still be each other's positive pair
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    mem = CrossBatchMemory(create("contrastive", normalize="none"), 2, 8).double()
    direct = create("contrastive", normalize="none")(x, y)
    torch.testing.assert_close(mem(x, y), direct)


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


def test_multi_hot_labels_in_memory() -> None:
    mem = CrossBatchMemory(create("contrastive"), 4, 16, label_dim=3)
    x = torch.randn(6, 4)
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 1]])
    assert torch.isfinite(mem(x, y))
    with pytest.raises(ValueError, match="per-row shape"):
        mem(x, torch.arange(6))


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
