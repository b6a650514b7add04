"""Atomic, checksummed checkpoints and loading with fallback to the previous one.

File format: a three-line text header followed by the payload, ``torch.save`` bytes of the state::

    DMLKIT-CHECKPOINT 1
    sha256 <64 hex digits of the payload>
    bytes <payload length>
    <payload>

:func:`save_checkpoint` writes the file beside its destination under a temporary name, flushes and
fsyncs it, keeps the current file as ``<name>.prev`` and moves the new one into place with
``os.replace`` (atomic on POSIX), then fsyncs the folder. A crash at any point leaves the old file
or the new one, never a torn one. :func:`load_checkpoint` verifies length and checksum; with
``fallback=True`` a damaged or missing file makes it warn and load ``<name>.prev``.
Memory: the payload is held once in memory while writing and reading.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch

MAGIC = b"DMLKIT-CHECKPOINT 1\n"


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, corrupt or not a dmlkit checkpoint."""


def previous_path(path: Path) -> Path:
    """Where the checkpoint that ``path`` replaced is kept."""
    return path.with_name(path.name + ".prev")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode(state: dict[str, Any]) -> bytes:
    """Header + ``torch.save`` payload of ``state`` (module docstring)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    return MAGIC + f"sha256 {digest}\nbytes {len(payload)}\n".encode() + payload


def decode(data: bytes, origin: str) -> dict[str, Any]:
    """The state in ``data``; :class:`CheckpointError` naming ``origin`` when it does not verify."""
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{origin}: not a dmlkit checkpoint (missing header)")
    lines = data[len(MAGIC) :].split(b"\n", 2)
    if len(lines) < 3 or not lines[0].startswith(b"sha256 ") or not lines[1].startswith(b"bytes "):
        raise CheckpointError(f"{origin}: truncated or malformed header")
    digest = lines[0][len(b"sha256 ") :].decode(errors="replace")
    try:
        size = int(lines[1][len(b"bytes ") :])
    except ValueError:
        raise CheckpointError(f"{origin}: malformed payload length in the header") from None
    payload = lines[2]
    if len(payload) != size:
        raise CheckpointError(
            f"{origin}: truncated, the header announces {size} payload bytes, found {len(payload)}"
        )
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{origin}: checksum mismatch, the file is corrupt")
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)


def save_checkpoint(state: dict[str, Any], path: str | Path, keep_previous: bool = True) -> Path:
    """Write ``state`` to ``path`` atomically (module docstring); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode(state)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | Path, fallback: bool = True) -> dict[str, Any]:
    """The verified state saved at ``path``.

    With ``fallback``, a missing or damaged ``path`` is reported with a warning and
    ``<path>.prev`` is loaded instead; when neither verifies, :class:`CheckpointError` (or
    ``FileNotFoundError`` when neither exists) lists both problems.
    """
    path = Path(path)
    candidates = [path, previous_path(path)] if fallback else [path]
    problems = []
    for candidate in candidates:
        try:
            state = decode(candidate.read_bytes(), str(candidate))
        except FileNotFoundError:
            problems.append(f"{candidate}: not found")
            continue
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:
            warnings.warn(
                f"checkpoint {path} is unusable ({problems[0]}); loaded the previous one, "
                f"{candidate}",
                stacklevel=2,
            )
        return state
    if all(p.endswith("not found") for p in problems):
        raise FileNotFoundError("no checkpoint: " + "; ".join(problems))
    raise CheckpointError("no usable checkpoint: " + "; ".join(problems))
