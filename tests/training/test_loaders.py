"""Loader settings: worker threads, pinned memory on CUDA, and persistent workers that draw each
epoch's augmentation exactly as the main process does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dmlkit.data import ArrayDataset, create_transform
from dmlkit.sampling import MPerClassBatchSampler
from dmlkit.training.loaders import WorkerThreads, loader_options


class Threads(Dataset[int]):
    """Item = the torch thread count of the process that loads it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        return torch.get_num_threads()


def test_loader_options() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert loader_options(0, 1, cpu) == {"num_workers": 0, "pin_memory": False}
    options = loader_options(2, 3, gpu, persistent=True)
    assert options["num_workers"] == 2 and options["pin_memory"] is True
    assert options["persistent_workers"] is True and options["worker_init_fn"].threads == 3
    assert loader_options(1, 1, cpu)["persistent_workers"] is False
    with pytest.raises(ValueError, match="worker threads: expected a positive count, got 0"):
        WorkerThreads(0)


def test_worker_threads_are_set_in_the_workers() -> None:
    loader = DataLoader(Threads(), batch_size=2, **loader_options(2, 2, torch.device("cpu")))
    assert [int(t) for batch in loader for t in batch] == [2, 2, 2, 2]


def test_persistent_workers_draw_each_epochs_augmentation() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 10, 10), dtype=np.uint8)
    ds = ArrayDataset(images, np.arange(12) % 3, ["a", "b", "c"], create_transform("small", True))
    sampler = MPerClassBatchSampler(ds.labels, m=2, batch_size=4, seed=1)

    def three_epochs(loader: DataLoader) -> list[torch.Tensor]:
        batches = []
        for epoch in range(3):
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)
            batches += [x for x, _ in loader]
        return batches

    main = three_epochs(DataLoader(ds, batch_sampler=sampler))
    options = loader_options(2, 1, torch.device("cpu"), persistent=True)
    persistent = three_epochs(DataLoader(ds, batch_sampler=sampler, **options))
    assert len(main) == 3 * len(sampler)
    assert all(torch.equal(a, b) for a, b in zip(main, persistent, strict=True))
    # the epochs differ (the workers did not keep epoch 0's stream)
    assert not torch.equal(main[0], main[len(sampler)])
