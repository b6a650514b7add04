"""ShuffledBatchSampler: distinct random items per batch, a function of (seed, epoch, index)."""

from __future__ import annotations

import pytest

from dmlkit.sampling import ShuffledBatchSampler


def test_an_epoch_is_a_permutation_cut_into_whole_batches() -> None:
    sampler = ShuffledBatchSampler(num_items=23, batch_size=5, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4  # the 3 left over are dropped
    flat = [i for b in batches for i in b]
    assert all(len(b) == 5 for b in batches) and len(set(flat)) == 20
    assert set(flat) <= set(range(23)) and flat != sorted(flat)


def test_seed_and_epoch_define_the_batches() -> None:
    a, b = ShuffledBatchSampler(40, 8, seed=1), ShuffledBatchSampler(40, 8, seed=1)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    assert list(ShuffledBatchSampler(40, 8, seed=2)) != list(a)


def test_resume_continues_at_the_saved_position() -> None:
    full = list(ShuffledBatchSampler(40, 8, seed=5))
    sampler = ShuffledBatchSampler(40, 8, seed=5)
    it = iter(sampler)
    next(it), next(it)
    state = sampler.state_dict()
    resumed = ShuffledBatchSampler(40, 8, seed=5)
    resumed.load_state_dict(state)
    assert list(resumed) == full[2:]
    with pytest.raises(ValueError, match="seed"):
        ShuffledBatchSampler(40, 8, seed=6).load_state_dict(state)


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="at most num_items=4"):
        ShuffledBatchSampler(4, 8)
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        ShuffledBatchSampler(4, 0)
