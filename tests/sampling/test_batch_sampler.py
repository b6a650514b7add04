"""M-per-class batch sampler: batch structure, class coverage, seeding, exact resume, DDP, errors."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dmlkit.sampling import MPerClassBatchSampler, classes_below


def uneven_labels(num_classes: int = 11, seed: int = 0) -> np.ndarray:
    """Classes 0..num_classes-1 with 4..9 items each, shuffled."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), rng.integers(4, 10, size=num_classes))
    return labels[rng.permutation(len(labels))]


def check_batch(batch: list[int], labels: np.ndarray, m: int, classes_per_batch: int) -> None:
    counts = Counter(labels[batch].tolist())
    assert len(counts) == classes_per_batch and set(counts.values()) == {m}
    assert len(set(batch)) == len(batch)  # every class here has >= m items: no repeats


@pytest.mark.parametrize(("m", "batch_size"), [(2, 6), (4, 8), (3, 12), (1, 5)])
def test_batches_hold_p_classes_with_m_items(m: int, batch_size: int) -> None:
    labels = uneven_labels()
    sampler = MPerClassBatchSampler(labels, m=m, batch_size=batch_size, seed=2)
    batches = list(sampler)
    assert (
        len(batches)
        == len(sampler)
        == max(len(labels) // batch_size, math.ceil(11 / (batch_size // m)))
    )
    for batch in batches:
        check_batch(batch, labels, m, batch_size // m)
    assert all(isinstance(i, int) for i in batches[0])


def test_every_class_visited_each_epoch_and_round_structure() -> None:
    labels = uneven_labels(num_classes=11)
    p = 3  # 11 classes in groups of 3: rounds of 4 batches, the last group completed with 1 class
    sampler = MPerClassBatchSampler(labels, m=2, batch_size=2 * p, num_batches=4, seed=7)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        visits = Counter(c for batch in sampler for c in set(labels[batch].tolist()))
        assert set(visits) == set(range(11))
        assert sorted(visits.values()) == [1] * 10 + [2]
    longer = MPerClassBatchSampler(labels, m=2, batch_size=2 * p, num_batches=6, seed=7)
    visits = Counter(c for batch in longer for c in set(labels[batch].tolist()))
    assert set(visits) == set(range(11)) and sum(visits.values()) == 18


def test_seeding_and_epochs() -> None:
    labels = uneven_labels()
    a = MPerClassBatchSampler(labels, m=2, batch_size=8, seed=1)
    b = MPerClassBatchSampler(labels, m=2, batch_size=8, seed=1)
    c = MPerClassBatchSampler(labels, m=2, batch_size=8, seed=2)
    first = list(a)
    assert first == list(b) and first != list(c)
    assert list(a) == first  # a completed pass repeats the epoch
    a.set_epoch(1)
    second = list(a)
    assert second != first
    b.set_epoch(1)
    assert list(b) == second  # an epoch does not depend on earlier iteration


def test_exact_resume_from_state_dict() -> None:
    labels = uneven_labels()
    full = MPerClassBatchSampler(labels, m=2, batch_size=6, seed=3)
    full.set_epoch(2)
    expected = list(full)
    run = MPerClassBatchSampler(labels, m=2, batch_size=6, seed=3)
    run.set_epoch(2)
    it = iter(run)
    consumed = [next(it) for _ in range(5)]
    state = run.state_dict()
    assert state["epoch"] == 2 and state["position"] == 5
    resumed = MPerClassBatchSampler(labels, m=2, batch_size=6, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the same epoch keeps the restored position
    assert consumed + list(resumed) == expected
    assert resumed.position == len(resumed)
    resumed.set_epoch(3)
    assert resumed.position == 0 and len(list(resumed)) == len(resumed)


def test_load_state_dict_checks_settings() -> None:
    labels = uneven_labels()
    state = MPerClassBatchSampler(labels, m=2, batch_size=6).state_dict()
    other = MPerClassBatchSampler(labels, m=3, batch_size=6)
    with pytest.raises(ValueError, match="m: saved 2, now 3"):
        other.load_state_dict(state)
    same = MPerClassBatchSampler(labels, m=2, batch_size=6)
    with pytest.raises(ValueError, match="position expected in"):
        same.load_state_dict({**state, "position": 10**6})


def test_ranks_get_disjoint_batches_of_one_sequence() -> None:
    labels = uneven_labels()
    world = 3
    single = MPerClassBatchSampler(labels, m=2, batch_size=4, num_batches=4 * world, seed=5)
    single.set_epoch(1)
    global_batches = list(single)
    per_rank = []
    for rank in range(world):
        s = MPerClassBatchSampler(
            labels, m=2, batch_size=4, num_batches=4, seed=5, rank=rank, world_size=world
        )
        s.set_epoch(1)
        per_rank.append(list(s))
    assert [b for step in zip(*per_rank, strict=True) for b in step] == global_batches
    default = MPerClassBatchSampler(labels, m=2, batch_size=4, rank=1, world_size=world)
    assert len(default) == max(len(labels) // (4 * world), math.ceil(math.ceil(11 / 2) / world))


def test_replacement_for_small_classes() -> None:
    labels = np.array([0] * 5 + [1] * 2 + [2] * 1 + [3] * 4)
    with pytest.raises(
        ValueError, match=r"2 class\(es\) have fewer: class 1 \(2 items\), class 2 \(1 item\)"
    ):
        MPerClassBatchSampler(labels, m=3, batch_size=6)
    sampler = MPerClassBatchSampler(labels, m=3, batch_size=6, replacement=True, num_batches=6)
    seen_small = False
    for batch in sampler:
        counts = Counter(labels[batch].tolist())
        assert set(counts.values()) == {3}
        for c, members in ((1, {5, 6}), (2, {7})):
            if c in counts:
                seen_small = True
                picked = [i for i in batch if labels[i] == c]
                assert set(picked) == members  # all items of the class, then repeats
    assert seen_small


def test_works_as_a_dataloader_batch_sampler() -> None:
    labels = uneven_labels()
    data = TensorDataset(torch.arange(len(labels)), torch.from_numpy(labels))
    sampler = MPerClassBatchSampler(torch.from_numpy(labels), m=2, batch_size=6, seed=0)
    batches = list(DataLoader(data, batch_sampler=sampler))
    assert len(batches) == len(sampler)
    for idx, y in batches:
        assert torch.equal(y, torch.from_numpy(labels)[idx])
        check_batch(idx.tolist(), labels, 2, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"m": 3, "batch_size": 8}, ValueError, "batch_size: expected a multiple of m=3, got 8"),
        ({"m": 1, "batch_size": 12}, ValueError, "needs at least 12 classes, got 11"),
        ({"m": 0, "batch_size": 8}, ValueError, "m: expected a positive int"),
        (
            {"m": 2, "batch_size": 4, "num_batches": 2},
            ValueError,
            "needs at least 6 batches per rank, got 2",
        ),
        (
            {"m": 2, "batch_size": 4, "rank": 2, "world_size": 2},
            ValueError,
            r"rank: expected an int in \[0, 1\]",
        ),
    ],
)
def test_argument_errors(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        MPerClassBatchSampler(uneven_labels(), **kwargs)


def test_label_errors() -> None:
    with pytest.raises(TypeError, match="integer class ids, got dtype float"):
        MPerClassBatchSampler(np.array([0.0, 1.0]), m=1, batch_size=1)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        MPerClassBatchSampler([], m=1, batch_size=1)
    assert classes_below([0, 0, 1, 2, 2, 2], 3) == [(0, 2), (1, 1)]
