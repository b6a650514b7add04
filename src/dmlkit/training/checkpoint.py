"""Training checkpoints: data-only state files (:mod:`dmlkit.core.serialization`) of kind
``"checkpoint"``, with the previous file kept as ``<name>.prev``.

A checkpoint holds tensors and plain values only (model, loss, optimizer, scheduler and scaler
states, the config as a dict, the sampler position, the RNG states as tensors and tuples), so it is
opened with ``torch.load(path, weights_only=True)`` and can never run code. In plain PyTorch::

    state = torch.load("runs/demo-.../checkpoints/best.pt", map_location="cpu",
                       weights_only=True)["state"]
    model.load_state_dict(state["model"])           # state["config"] is the run's config

:func:`load_checkpoint` never substitutes one file for another unless asked: with
``fallback=True`` (what ``--resume`` uses) a damaged ``last.pt`` makes it print a one-line notice
and load ``last.pt.prev``; without it, a damaged file is an error that names the ``.prev`` file
the user may pass instead. Checkpoints of the old pickle format (dmlkit 0.1) are refused;
:func:`convert_legacy` (``dmlkit convert OLD NEW``) rewrites one in the current format, reading it
with PyTorch's restricted unpickler (numpy arrays of the RNG state allowed), so that conversion
runs no code either.

What a run saves: :func:`last_state` (``last.pt``, everything an exact resume needs, restored by
:func:`restore_last`) and :func:`best_state` (``best.pt``, the selected model).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dmlkit.config import config_diff, config_from_dict, config_to_dict
from dmlkit.core.serialization import (
    LEGACY_MAGIC,
    CheckpointError,
    previous_path,
    read_state,
    write_state,
)
from dmlkit.training.seed import capture_rng_state, restore_rng_state, rng_state_from_legacy

if TYPE_CHECKING:
    from dmlkit.training.trainer import Trainer

KIND = "checkpoint"
# What the numpy arrays of an old checkpoint's RNG state unpickle through, under the names numpy 2
# and numpy 1 write.
_numpy_core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core
_reconstruct = _numpy_core.multiarray._reconstruct
LEGACY_NUMPY_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
    (_reconstruct, "numpy._core.multiarray._reconstruct"),
    (_reconstruct, "numpy.core.multiarray._reconstruct"),
]

# Fields that may differ between a run and its resume: where it writes, how it shows progress and
# how many loader workers and threads it uses (augmentation is seeded per item, so workers change
# nothing), and what it does with a non-finite step (to resume a stopped run with ``skip``).
RESUME_FREE = (
    "output.",
    "train.progress",
    "train.nonfinite",
    "train.dist_timeout",
    "data.num_workers",
    "data.worker_threads",
)
# ``last.pt`` key -> the trainer's attribute saved through its ``state_dict``.
STATEFUL = {
    "model": "model",
    "loss": "loss_fn",
    "optimizer": "optimizer",
    "scheduler": "scheduler",
    "scaler": "scaler",
    "callbacks": "callbacks",
}
# The trainer's progress, saved as plain values under its own names.
PROGRESS = (
    "step",
    "epoch",
    "batch_in_epoch",
    "before",
    "best",
    "last_test",
    "stale_evals",
    "nonfinite_skipped",
    "stopped",
    "train_time_s",
)
# Values of progress fields that older checkpoints lack (the non-finite policy came later).
ADDED_LATER: dict[str, Any] = {"nonfinite_skipped": 0}

__all__ = [
    "CheckpointError",
    "best_state",
    "convert_legacy",
    "last_state",
    "load_checkpoint",
    "restore_last",
    "save_checkpoint",
]


def save_checkpoint(state: dict[str, Any], path: str | Path, keep_previous: bool = True) -> Path:
    """Write ``state`` to ``path`` atomically, the replaced file kept as ``<path>.prev``."""
    return write_state(state, path, KIND, keep_previous=keep_previous)


def _read(path: Path) -> dict[str, Any]:
    kind, state = read_state(path)
    if kind != KIND or not isinstance(state, dict):
        raise CheckpointError(f"{path}: a dmlkit {kind!r} file, not a training checkpoint")
    return state


def load_checkpoint(path: str | Path, fallback: bool = False) -> dict[str, Any]:
    """The verified state saved at ``path``.

    Without ``fallback`` a missing or damaged ``path`` raises (``FileNotFoundError`` or
    :class:`CheckpointError`), naming ``<path>.prev`` when that file exists. With ``fallback`` a
    damaged or missing ``path`` is reported in one line on stderr and ``<path>.prev`` is loaded;
    when neither verifies, the error lists both problems.
    """
    path = Path(path)
    previous = previous_path(path)
    try:
        return _read(path)
    except (FileNotFoundError, CheckpointError) as err:
        first = err
    if not fallback:
        kind = "no checkpoint" if isinstance(first, FileNotFoundError) else "unusable checkpoint"
        hint = (
            f"; the checkpoint it replaced is {previous} (pass that file to use it)"
            if previous.is_file()
            else ""
        )
        raise type(first)(f"{kind}: {first}{hint}") from None
    try:
        state = _read(previous)
    except (FileNotFoundError, CheckpointError) as err:
        if isinstance(first, FileNotFoundError) and isinstance(err, FileNotFoundError):
            raise FileNotFoundError(f"no checkpoint: {first}; {err}") from None
        raise CheckpointError(f"no usable checkpoint: {first}; {err}") from None
    print(f"dmlkit: notice: {first}; resuming from the previous one, {previous}", file=sys.stderr)
    return state


def _legacy_payload(data: bytes, origin: str) -> bytes:
    """The verified ``torch.save`` payload of an old-format file (three-line header)."""
    lines = data[len(LEGACY_MAGIC) :].split(b"\n", 2)
    if len(lines) < 3 or not lines[0].startswith(b"sha256 ") or not lines[1].startswith(b"bytes "):
        raise CheckpointError(f"{origin}: truncated or malformed header")
    payload = lines[2]
    if str(len(payload)).encode() != lines[1][len(b"bytes ") :].strip():
        raise CheckpointError(f"{origin}: truncated (payload length differs from the header)")
    if hashlib.sha256(payload).hexdigest().encode() != lines[0][len(b"sha256 ") :].strip():
        raise CheckpointError(f"{origin}: checksum mismatch, the file is corrupt")
    return payload


def convert_legacy(old: str | Path, new: str | Path) -> Path:
    """Rewrite the old-format checkpoint ``old`` (dmlkit 0.1) as a data-only checkpoint ``new``
    (module docstring); returns ``new``."""
    old, new = Path(old), Path(new)
    data = old.read_bytes()
    if not data.startswith(LEGACY_MAGIC):
        raise CheckpointError(f"{old}: not a checkpoint of the old format (dmlkit 0.1)")
    if new.resolve() == old.resolve():
        raise ValueError(f"{new}: choose a new file name, the converter does not overwrite {old}")
    payload = _legacy_payload(data, str(old))
    try:
        with torch.serialization.safe_globals(LEGACY_NUMPY_GLOBALS):
            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{old}: refused, the file holds objects that loading would have to run as code "
            f"({first})"
        ) from None
    if "rng" in state:
        state["rng"] = rng_state_from_legacy(state["rng"])
    return save_checkpoint(state, new, keep_previous=False)


def last_state(trainer: Trainer) -> dict[str, Any]:
    """The content of ``last.pt``: the config, the states of the model, loss, optimizer,
    scheduler, scaler and callbacks (``STATEFUL``), the sampler at the trainer's position, the
    global RNG states, the trainer's progress (``PROGRESS``) and the log position."""
    if trainer.logger is None:
        raise RuntimeError("checkpoints are written only inside fit()")
    state: dict[str, Any] = {"kind": "last", "config": config_to_dict(trainer.config)}
    state.update({key: getattr(trainer, name).state_dict() for key, name in STATEFUL.items()})
    state.update({name: getattr(trainer, name) for name in PROGRESS})
    state["sampler"] = trainer.sampler_state()
    state["rng"] = capture_rng_state()
    state["log_position"] = trainer.logger.position()
    return state


def restore_last(trainer: Trainer, path: Path) -> dict[str, int]:
    """Restore into ``trainer`` the ``last.pt`` at ``path`` (its previous file when it is
    damaged), after checking that the config matches the trainer's except for ``RESUME_FREE``;
    returns the log position to cut the logs to."""
    state = load_checkpoint(path, fallback=True)
    if state.get("kind") != "last":
        raise ValueError(
            f"{path}: expected the 'last' checkpoint of a run, got {state.get('kind')!r}"
        )
    saved = config_from_dict(state["config"])
    differ = [d for d in config_diff(saved, trainer.config) if not d.startswith(RESUME_FREE)]
    if differ:
        raise ValueError(
            f"--resume: the config differs from the one of {trainer.run_dir}:\n  "
            + "\n  ".join(differ)
        )
    for key, name in STATEFUL.items():
        getattr(trainer, name).load_state_dict(state[key])
    trainer.sampler.load_state_dict(state["sampler"])
    for name in PROGRESS:
        setattr(trainer, name, state[name] if name in state else ADDED_LATER[name])
    restore_rng_state(state["rng"])
    return dict(state["log_position"])


def best_state(trainer: Trainer) -> dict[str, Any]:
    """The content of ``best.pt``: the config, the step, the model and loss states and the
    selection (``trainer.best`` without its test metrics)."""
    return {
        "kind": "best",
        "config": config_to_dict(trainer.config),
        "step": trainer.step,
        "model": trainer.model.state_dict(),
        "loss": trainer.loss_fn.state_dict(),
        "selection": {k: v for k, v in trainer.best.items() if k != "test"},
    }
