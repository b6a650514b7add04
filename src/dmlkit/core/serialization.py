"""Data-only state files: tensors and plain values, checksummed, written atomically.

A *state* is a nested structure of ``dict`` (str or int keys), ``list``, ``tuple``, ``str``,
``int``, ``float``, ``bool``, ``None``, ``bytes`` and ``torch.Tensor``. A state file is a plain
``torch.save`` archive of one dict::

    {"format": "dmlkit", "version": 2, "kind": <str>, "sha256": <hex digest of state>,
     "state": <state>}

It is read with ``torch.load(path, weights_only=True)``: PyTorch's restricted unpickler builds only
tensors and the plain types above, so opening a file can never run code, whoever made it. The
same call opens a dmlkit checkpoint in plain PyTorch::

    torch.load("best.pt", map_location="cpu", weights_only=True)["state"]["model"]

The digest (:func:`state_digest`) is SHA-256 over a canonical walk of the state (type tags, dict
keys in order, tensor dtype, shape and bytes), so it does not depend on how ``torch.save`` lays
out the archive; it proves that the file is intact, not who wrote it.

:func:`write_state` writes beside the destination under a temporary name, flushes and fsyncs,
keeps the current file as ``<name>.prev`` (when asked) and moves the new one into place with
``os.replace`` (atomic on POSIX), then fsyncs the folder: a crash at any point leaves the old file
or the new one, never a torn one. Memory: the state is serialised once in memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

FORMAT = "dmlkit"
VERSION = 2
LEGACY_MAGIC = b"DMLKIT-CHECKPOINT 1\n"
ZIP_MAGIC = b"PK\x03\x04"
UNPICKLER_REASON = re.compile(
    r"(unsupported global: |unsupported )?GLOBAL \S+|Unsupported operand \S+", re.I
)
TMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A state file that is missing parts, corrupt, of an old format or not a dmlkit file."""


def previous_path(path: Path) -> Path:
    """Where the file that ``path`` replaced is kept."""
    return path.with_name(path.name + ".prev")


def plain_state(obj: Any, where: str = "state") -> Any:
    """``obj`` as a state (module docstring): numpy scalars become Python numbers, everything
    else must already be one of the state types; ``TypeError`` names the first offending
    ``where`` path (for example ``state['callbacks'][0]``) and its type."""
    if isinstance(obj, Tensor):
        return obj.detach()
    if isinstance(obj, (bool, int, float, str, bytes)) or obj is None:
        return obj
    if isinstance(obj, np.generic) and not isinstance(obj, np.void):
        return obj.item()
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"{where}: expected str or int keys, got {type(key).__name__}")
            out[key] = plain_state(value, f"{where}[{key!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [plain_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(
        f"{where}: a state holds tensors, dicts, lists, tuples, str, int, float, bool, bytes "
        f"and None; got {type(obj).__module__}.{type(obj).__qualname__}"
    )


def _update(h: Any, obj: Any) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
    elif isinstance(obj, Mapping):
        h.update(b"D%d" % len(obj))
        for key, value in obj.items():
            _update(h, key)
            _update(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(b"L" if isinstance(obj, list) else b"U")
        h.update(b"%d" % len(obj))
        for value in obj:
            _update(h, value)
    elif isinstance(obj, float):
        h.update(b"F" + struct.pack("<d", obj))
    elif isinstance(obj, bytes):
        h.update(b"B%d:" % len(obj) + obj)
    else:  # bool, int, str, None: repr is exact and names the type
        text = repr(obj).encode()
        h.update(b"P%d:" % len(text) + text)


def state_digest(state: Any) -> str:
    """SHA-256 hex digest of a state's content (module docstring)."""
    h = hashlib.sha256()
    _update(h, state)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_state(state: Any, kind: str) -> bytes:
    """The bytes of a state file holding ``state`` (checked by :func:`plain_state`)."""
    state = plain_state(state)
    box = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "sha256": state_digest(state),
        "state": state,
    }
    buffer = io.BytesIO()
    torch.save(box, buffer)
    return buffer.getvalue()


def write_state(state: Any, path: str | Path, kind: str, keep_previous: bool = False) -> Path:
    """Write ``state`` to ``path`` atomically (module docstring); returns ``path``. With
    ``keep_previous`` the file it replaces is kept as ``<name>.prev``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: expected a file path for the {kind} file, got a folder")
    data = encode_state(state, kind)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
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


def remove_stale_tmp(folder: str | Path) -> list[Path]:
    """Delete the temporary files that an interrupted :func:`write_state` left in ``folder``
    (``.<name>.<pid>.tmp``); returns them."""
    stale = sorted(Path(folder).glob(f".*{TMP_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _reason(err: BaseException) -> str:
    """The informative part of a ``torch.load`` error: the refused global or operand the
    restricted unpickler names, else the first line."""
    text = str(err)
    found = UNPICKLER_REASON.search(text)
    if found:
        return found.group(0)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def load_archive(data: bytes, origin: str) -> Any:
    """The object in a ``torch.save`` file (zip archive, or the legacy format of old weight
    files), read with ``weights_only=True``; :class:`CheckpointError` naming ``origin`` for an
    old-format dmlkit checkpoint, content that would run code, or bytes that are not a complete
    torch file."""
    if data.startswith(LEGACY_MAGIC):
        raise CheckpointError(
            f"{origin}: a checkpoint of the old format (dmlkit 0.1), a pickle that could run code "
            f"when loaded, so it is not opened. If it comes from a source you trust, convert it "
            f"once: dmlkit convert {origin} NEW.pt"
        )
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _reason(err)
        if "GLOBAL" in reason:
            raise CheckpointError(
                f"{origin}: refused, the file holds objects other than tensors and plain values, "
                f"which loading would have to run as code ({reason})"
            ) from None
        raise CheckpointError(
            f"{origin}: not a torch.save file, or a corrupt one ({reason})"
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as err:
        what = "truncated or corrupt" if data.startswith(ZIP_MAGIC) else "not a torch.save file"
        raise CheckpointError(f"{origin}: {what} ({_reason(err)})") from None


def is_state_file(obj: Any) -> bool:
    """Whether a loaded archive object is a dmlkit state file (of any version)."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def verify_state_file(obj: Any, origin: str) -> tuple[str, Any]:
    """``(kind, state)`` of a loaded dmlkit state file after checking version and digest;
    :class:`CheckpointError` naming ``origin`` otherwise."""
    if not is_state_file(obj):
        raise CheckpointError(f"{origin}: a torch file, but not a dmlkit file (no format field)")
    if obj.get("version") != VERSION or not {"kind", "sha256", "state"} <= set(obj):
        raise CheckpointError(
            f"{origin}: dmlkit file version {obj.get('version')!r}, expected {VERSION}"
        )
    if state_digest(obj["state"]) != obj["sha256"]:
        raise CheckpointError(f"{origin}: checksum mismatch, the file is corrupt")
    return str(obj["kind"]), obj["state"]


def read_state(path: str | Path) -> tuple[str, Any]:
    """``(kind, state)`` of the state file at ``path``; ``FileNotFoundError`` when it does not
    exist, :class:`CheckpointError` when it is a folder or does not verify."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: expected a checkpoint file, found a folder")
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    return verify_state_file(load_archive(path.read_bytes(), str(path)), str(path))
