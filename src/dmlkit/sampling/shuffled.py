"""Shuffled batches of random items, resumable at any position.

Epoch ``e`` is the permutation ``numpy.random.default_rng([seed, e, SHUFFLE_STREAM])`` of the
``N`` item indices cut into ``N // batch_size`` batches (the incomplete rest is dropped), so batch
``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``. This is the loader of the paper-era
shared task of "Sharing Matters" (random images, grouped into surrogate blocks by
:class:`~dmlkit.sampling.shared_triplets.SurrogateSampler`). Memory O(N).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from dmlkit.sampling.batch import _positive_int

SHUFFLE_STREAM = 2


class ShuffledBatchSampler(Sampler[list[int]]):
    """``batch_size`` random indices of ``range(num_items)`` per batch, ``num_items // batch_size``
    batches per epoch; ``state_dict``/``load_state_dict``/``set_epoch`` as
    :class:`~dmlkit.sampling.batch.MPerClassBatchSampler` (epoch and position)."""

    def __init__(self, num_items: int, batch_size: int, seed: int = 0) -> None:
        self.num_items = _positive_int(num_items, "num_items")
        self.batch_size = _positive_int(batch_size, "batch_size")
        if self.batch_size > self.num_items:
            raise ValueError(
                f"batch_size: expected at most num_items={self.num_items}, got {self.batch_size}"
            )
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self._perm_cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.num_items // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Select ``epoch``; a new epoch starts at position 0."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(
                f"sampler state: position expected in [0, {len(self)}], got {position}"
            )
        if int(state["seed"]) != self.seed:
            raise ValueError(f"sampler state: saved with seed {state['seed']}, now {self.seed}")
        self.epoch = int(state["epoch"])
        self.position = position

    def batch(self, epoch: int, index: int) -> list[int]:
        """Batch ``index`` of ``epoch``: ``batch_size`` distinct item indices."""
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, SHUFFLE_STREAM])
            self._perm_cache = (epoch, rng.permutation(self.num_items))
        perm = self._perm_cache[1]
        return perm[index * self.batch_size : (index + 1) * self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        if self.position >= len(self):
            self.position = 0
        epoch = self.epoch
        for step in range(self.position, len(self)):
            self.position = step + 1
            yield self.batch(epoch, step)
