"""M-per-class batch sampler: every batch holds ``batch_size / m`` classes with ``m`` items each.

How an epoch is built (``P = batch_size / m`` classes per batch, ``C`` classes, ``G = num_batches *
world_size`` global batches per epoch):

1. Rounds. A round is a seeded permutation of all ``C`` classes cut into ``R = ceil(C / P)`` groups
   of ``P``; when ``C`` is not a multiple of ``P`` the last group is completed with classes drawn
   without replacement from the other groups of that round. Each group becomes one batch, so every
   class is visited once per round (a few twice). An epoch is rounds ``0, 1, ...`` of that epoch
   until ``G`` batches are made (the last round may be cut short); ``G >= R`` is required, so every
   class is visited in every epoch.
2. Items. Each visit takes ``m`` distinct items of the class at random; a class with fewer than
   ``m`` items is refused, or with ``replacement=True`` gives all its items plus random repeats.
3. Ranks. Rank ``r`` of ``world_size`` takes global batches ``r, r + world_size, ...``: the ranks
   get disjoint batches of one common sequence, and at one step they hold different groups of the
   same round.

Randomness is ``numpy.random.default_rng([seed, epoch, kind, index])`` per round and per batch,
so batch ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``: resuming at any position
gives exactly the batches of an uninterrupted run. Memory O(N) for N labels; one batch costs
O(sum of the sizes of its classes).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

ROUND_STREAM = 0
BATCH_STREAM = 1


def as_label_array(labels: object, name: str = "labels") -> np.ndarray:
    """``labels`` (sequence, numpy array or tensor of ints) as a non-empty 1-D int64 array."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{name}: expected a non-empty 1-D array of class ids, got shape {arr.shape}"
        )
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def classes_below(labels: object, m: int) -> list[tuple[int, int]]:
    """``(class id, item count)`` of every class in ``labels`` with fewer than ``m`` items."""
    classes, counts = np.unique(as_label_array(labels), return_counts=True)
    return [(int(c), int(n)) for c, n in zip(classes, counts, strict=True) if n < m]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


class MPerClassBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size // m`` classes x ``m`` items (construction in the module docstring).

    A ``batch_sampler`` for ``torch.utils.data.DataLoader``. ``num_batches`` is the number of
    batches per epoch and rank (default ``len(labels) // (batch_size * world_size)``, at least the
    ``ceil(C / (batch_size / m)) / world_size`` that visiting every class needs).

    Resume: ``state_dict()`` holds the epoch and the position (batches of this epoch handed out).
    :meth:`load_state_dict` restores both and the next iteration continues at that position.
    :meth:`set_epoch` with a new epoch starts it at position 0 (with the current epoch it keeps the
    position, so ``load_state_dict`` followed by ``set_epoch`` of the same epoch resumes). A pass
    that completes leaves the position at ``len(self)``; iterating again repeats the epoch from its
    start. A ``DataLoader`` with workers draws batches ahead of training: save the number of batches
    actually trained on as the position, not the sampler's own count.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        m: int,
        batch_size: int,
        num_batches: int | None = None,
        seed: int = 0,
        replacement: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        arr = as_label_array(labels)
        self.m = _positive_int(m, "m")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.world_size = _positive_int(world_size, "world_size")
        if (
            isinstance(rank, bool)
            or not isinstance(rank, (int, np.integer))
            or not 0 <= rank < world_size
        ):
            raise ValueError(f"rank: expected an int in [0, {world_size - 1}], got {rank!r}")
        if self.batch_size % self.m:
            raise ValueError(
                f"batch_size: expected a multiple of m={self.m}, got {self.batch_size}"
            )
        self.classes_per_batch = self.batch_size // self.m
        self.class_ids, inverse = np.unique(arr, return_inverse=True)
        if len(self.class_ids) < self.classes_per_batch:
            raise ValueError(
                f"labels: a batch of {self.batch_size} with m={self.m} needs at least "
                f"{self.classes_per_batch} classes, got {len(self.class_ids)}"
            )
        small = classes_below(arr, self.m)
        if small and not replacement:
            shown = ", ".join(f"class {c} ({n} item{'s' * (n != 1)})" for c, n in small[:20])
            more = f" and {len(small) - 20} more" if len(small) > 20 else ""
            raise ValueError(
                f"labels: m={self.m} items per class, but {len(small)} class(es) have fewer: "
                f"{shown}{more}. Use replacement=True to repeat their items, a smaller m, or drop "
                "those classes"
            )
        order = np.argsort(inverse, kind="stable")
        self.members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
        self.round_batches = math.ceil(len(self.class_ids) / self.classes_per_batch)
        needed = math.ceil(self.round_batches / self.world_size)
        if num_batches is None:
            num_batches = max(len(arr) // (self.batch_size * self.world_size), needed)
        self.num_batches = _positive_int(num_batches, "num_batches")
        if self.num_batches < needed:
            raise ValueError(
                f"num_batches: visiting each of the {len(self.class_ids)} classes once per epoch "
                f"with {self.classes_per_batch} classes per batch and world_size={self.world_size} "
                f"needs at least {needed} batches per rank, got {self.num_batches}"
            )
        self.seed = int(seed)
        self.replacement = bool(replacement)
        self.rank = int(rank)
        self.epoch = 0
        self.position = 0
        self._round_cache: tuple[tuple[int, int], np.ndarray] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``; a new epoch starts at position 0 (see the class docstring)."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def state_dict(self) -> dict[str, Any]:
        """Epoch, position and the settings that define the batch sequence."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "m": self.m,
            "batch_size": self.batch_size,
            "num_batches": self.num_batches,
            "world_size": self.world_size,
            "num_classes": len(self.class_ids),
            "num_items": sum(len(g) for g in self.members),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore epoch and position; ``ValueError`` when the settings differ from this sampler's."""
        mine = self.state_dict()
        differ = {
            k: (state[k], mine[k])
            for k in mine
            if k in state and k not in ("epoch", "position") and state[k] != mine[k]
        }
        if differ:
            detail = ", ".join(f"{k}: saved {a}, now {b}" for k, (a, b) in differ.items())
            raise ValueError(f"sampler state: saved with different settings ({detail})")
        position = int(state["position"])
        if not 0 <= position <= self.num_batches:
            raise ValueError(
                f"sampler state: position expected in [0, {self.num_batches}], got {position}"
            )
        self.epoch = int(state["epoch"])
        self.position = position

    def round_classes(self, epoch: int, round_index: int) -> np.ndarray:
        """Class indices of round ``round_index`` of ``epoch``, ``(R * P,)``, group after group."""
        key = (epoch, round_index)
        if self._round_cache is not None and self._round_cache[0] == key:
            return self._round_cache[1]
        rng = np.random.default_rng([self.seed, epoch, ROUND_STREAM, round_index])
        perm = rng.permutation(len(self.class_ids))
        short = len(perm) % self.classes_per_batch
        if short:
            cut = len(perm) - short
            fill = rng.choice(perm[:cut], self.classes_per_batch - short, replace=False)
            perm = np.concatenate([perm, fill])
        self._round_cache = (key, perm)
        return perm

    def batch(self, epoch: int, index: int) -> list[int]:
        """Global batch ``index`` of ``epoch`` (all ranks): ``batch_size`` dataset indices."""
        round_index, group = divmod(index, self.round_batches)
        p = self.classes_per_batch
        classes = self.round_classes(epoch, round_index)[group * p : (group + 1) * p]
        rng = np.random.default_rng([self.seed, epoch, BATCH_STREAM, index])
        picks = []
        for c in classes:
            members = self.members[c]
            if len(members) >= self.m:
                picks.append(members[rng.choice(len(members), self.m, replace=False)])
            else:
                extra = rng.choice(len(members), self.m - len(members), replace=True)
                picks.append(members[np.concatenate([rng.permutation(len(members)), extra])])
        return np.concatenate(picks).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        if self.position >= self.num_batches:
            self.position = 0
        epoch = self.epoch
        for step in range(self.position, self.num_batches):
            self.position = step + 1
            yield self.batch(epoch, step * self.world_size + self.rank)
