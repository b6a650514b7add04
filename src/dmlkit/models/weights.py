"""Local pretrained weights: read a state dict from a file and load it with strict key matching.

Nothing is ever downloaded: ``pretrained`` is the path of a file on disk, either

- a ``torch.save`` file (read with ``weights_only=True``, so it cannot run code) holding a state
  dict, or a checkpoint dict holding one under ``state_dict``, ``model``, ``model_state_dict``,
  ``module`` or ``net``;
- a dmlkit training checkpoint (``best.pt``, ``last.pt``; verified, its ``model`` state); or
- a ``.safetensors`` file.

The prefixes that wrappers add to every key (``module.`` from DataParallel/DDP, ``_orig_mod.``
from ``torch.compile``, ``model.`` from training frameworks) are stripped while all keys share
one. Loading is strict: missing keys (except BatchNorm's ``num_batches_tracked`` counters, which
older files lack), unexpected keys and shape mismatches raise one ``ValueError`` that lists
them, before any weight is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from dmlkit.core.serialization import (
    CheckpointError,
    is_state_file,
    load_archive,
    verify_state_file,
)

STATE_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")
COMMON_PREFIXES = ("module.", "_orig_mod.", "model.")
SHOWN = 8


def _is_state(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def strip_prefixes(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with each of :data:`COMMON_PREFIXES` removed while every key starts with it."""
    out = dict(state)
    while True:
        prefix = next((p for p in COMMON_PREFIXES if all(k.startswith(p) for k in out)), None)
        if prefix is None:
            return out
        out = {k[len(prefix) :]: v for k, v in out.items()}


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file; ``ValueError`` when it does not parse."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as err:
        raise ImportError(
            f"pretrained: reading {path} needs safetensors: pip install safetensors"
        ) from err
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"pretrained: {path} is not a valid .safetensors file ({err})") from None


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict stored at ``path`` (module docstring), wrapper prefixes stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained: no weights file at {path} (weights are never downloaded)"
        )
    if path.suffix == ".safetensors":
        obj: object = _read_safetensors(path)
    else:
        try:
            obj = load_archive(path.read_bytes(), str(path))
            if is_state_file(obj):
                kind, state = verify_state_file(obj, str(path))
                if kind != "checkpoint" or not isinstance(state, dict) or "model" not in state:
                    raise CheckpointError(f"{path}: a dmlkit {kind!r} file without model weights")
                obj = state["model"]
        except CheckpointError as err:
            raise ValueError(f"pretrained: {err}") from None
    if not _is_state(obj):
        nested = [k for k in STATE_KEYS if isinstance(obj, Mapping) and _is_state(obj.get(k))]
        if not nested:
            keys = sorted(map(str, obj))[:SHOWN] if isinstance(obj, Mapping) else None
            raise ValueError(
                f"pretrained: {path} holds no state dict (a mapping of names to tensors, or one "
                f"under {', '.join(STATE_KEYS)}); found {type(obj).__name__}"
                + (f" with keys {keys}" if keys is not None else "")
            )
        obj = obj[nested[0]]  # type: ignore[index]
    return strip_prefixes(obj)  # type: ignore[arg-type]


def _listed(title: str, items: list[str]) -> str:
    more = f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return f"{len(items)} {title}: {', '.join(items[:SHOWN])}{more}"


def load_state_dict_strict(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load ``state`` into ``module`` when keys and shapes match exactly, else ``ValueError``
    naming ``source`` and listing the missing keys, unexpected keys and shape mismatches."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        _listed(title, items)
        for title, items in (
            ("missing key(s)", missing),
            ("unexpected key(s)", unexpected),
            ("shape mismatch(es)", shapes),
        )
        if items
    ]
    if problems:
        raise ValueError(f"{source}: the weights do not match: " + "; ".join(problems))
    module.load_state_dict(dict(state), strict=True)
