"""DataLoader settings of a run: worker processes, their threads, pinned memory, persistence.

:func:`loader_options` gives the keyword arguments every loader of a run shares:

- ``num_workers`` processes decode and augment (``data.num_workers``; 0: the main process);
- ``worker_init_fn`` sets ``torch.set_num_threads(worker_threads)`` in each worker
  (``data.worker_threads``; PyTorch starts workers with one thread);
- ``pin_memory`` on CUDA: batches land in page-locked memory and are copied with
  ``non_blocking=True``;
- ``persistent_workers`` for a loader iterated epoch after epoch (the training loader): the
  workers and their decoders stay up between epochs. The datasets keep their epoch in shared
  memory (:meth:`dmlkit.data.DMLDataset.set_epoch`), so persistent workers draw each epoch's
  augmentation, the same as fresh workers or the main process would.
"""

from __future__ import annotations

from typing import Any

import torch


class WorkerThreads:
    """``worker_init_fn`` setting the torch threads of a loader worker (picklable)."""

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"worker threads: expected a positive count, got {threads}")
        self.threads = threads

    def __call__(self, worker_id: int) -> None:
        torch.set_num_threads(self.threads)


def loader_options(
    num_workers: int, worker_threads: int, device: torch.device, persistent: bool = False
) -> dict[str, Any]:
    """``DataLoader`` keyword arguments for ``num_workers`` workers of ``worker_threads`` threads
    feeding ``device`` (module docstring); ``persistent`` keeps the workers between iterations
    (when there are workers)."""
    options: dict[str, Any] = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        options["worker_init_fn"] = WorkerThreads(worker_threads)
        options["persistent_workers"] = persistent
    return options
