"""Seeding and capture/restore of the global random number generators of a run.

A run is reproducible when all of its randomness flows from one seed: the global torch generator
(model initialisation, dropout, in-loss sampling), numpy's and Python's global generators
(third-party code) and the CUDA generators. The batch sampler and the dataset's augmentation are
pure functions of ``(seed, epoch, index)`` and keep their own small state; the training data
loader gets its own generator so that creating its iterator mid-epoch on resume draws nothing
from the global one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's and Python's global generators with ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _numpy_state(legacy: tuple[Any, ...]) -> dict[str, Any]:
    """numpy's ``get_state()`` tuple as plain values: the MT19937 key as an int64 tensor."""
    name, key, pos, has_gauss, cached = legacy
    return {
        "name": str(name),
        "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def capture_rng_state() -> dict[str, Any]:
    """The state of every global generator (torch CPU and CUDA, numpy, Python) as tensors and
    plain values (a checkpoint holds nothing else)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(tuple(np.random.get_state(legacy=True))),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_state_from_legacy(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state captured before the RNG states were plain values (numpy's as its tuple)."""
    out = dict(state)
    if isinstance(state["numpy"], tuple):
        out["numpy"] = _numpy_state(state["numpy"])
    return out


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["name"],
            numpy["key"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
