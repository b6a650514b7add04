"""Input validation shared by every public entry point.

Each check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape or
values) with a message that names the argument, what was expected and what came.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_embeddings(emb: object, name: str = "emb") -> Tensor:
    """Validate an embedding matrix.

    Expected: a floating-point ``torch.Tensor`` of shape ``(B, D)`` with ``B >= 1``, ``D >= 1`` and
    only finite values. Returns the tensor unchanged.
    """
    if not isinstance(emb, Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor of shape (B, D), got {type(emb).__name__}"
        )
    if emb.ndim != 2:
        raise ValueError(f"{name}: expected shape (B, D) with 2 dims, got {tuple(emb.shape)}")
    if not emb.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {emb.dtype}")
    if emb.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row (B >= 1), got an empty batch")
    if emb.shape[1] == 0:
        raise ValueError(
            f"{name}: expected at least one column (D >= 1), got shape {tuple(emb.shape)}"
        )
    # a NaN/Inf anywhere makes the sum non-finite, so one reduction clears the common case; the
    # elementwise test runs only when the sum is not finite (a bad value or a mere overflow)
    if not bool(torch.isfinite(emb.detach().sum())):
        bad = int((~torch.isfinite(emb)).any(dim=1).sum())
        if bad:
            raise ValueError(
                f"{name}: expected finite values, got NaN/Inf in {bad} of {emb.shape[0]} rows"
            )
    return emb


def check_labels(labels: object, batch_size: int, name: str = "labels") -> Tensor:
    """Validate labels for ``batch_size`` rows.

    Expected: an integer tensor of shape ``(B,)`` (class ids) or an integer/bool tensor of shape
    ``(B, C)`` (multi-hot, entries in {0, 1}). Float labels are refused: they usually mean a bug
    upstream (a one-hot made with ``float()`` or labels on the wrong tensor). An integer ``(B, 1)``
    tensor is refused as ambiguous (class ids with an extra axis, or multi-hot over one class?):
    class ids are ``(B,)``, and multi-hot labels over a single class say so by being bool.
    """
    if not isinstance(labels, Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor of shape ({batch_size},), got {type(labels).__name__}"
        )
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(
            f"{name}: expected integer (int64) or bool labels, got dtype {labels.dtype}"
        )
    if labels.ndim not in (1, 2):
        raise ValueError(
            f"{name}: expected shape ({batch_size},) or ({batch_size}, C) multi-hot, "
            f"got {tuple(labels.shape)}"
        )
    if labels.ndim == 2 and labels.shape[1] == 1 and labels.dtype != torch.bool:
        raise ValueError(
            f"{name}: shape ({labels.shape[0]}, 1) is ambiguous: class ids must have shape "
            f"({labels.shape[0]},) (use labels.view(-1)); multi-hot labels over one class must "
            "be a bool tensor"
        )
    if labels.shape[0] != batch_size:
        raise ValueError(
            f"{name}: expected {batch_size} rows to match the embeddings, got {labels.shape[0]}"
        )
    multi_hot = labels.ndim == 2 and labels.dtype != torch.bool and labels.numel() > 0
    if multi_hot and bool(((labels != 0) & (labels != 1)).any()):
        raise ValueError(f"{name}: multi-hot labels (B, C) must contain only 0 and 1")
    return labels


def check_same_dim(emb: Tensor, ref_emb: Tensor) -> None:
    """Require ``emb (B, D)`` and ``ref_emb (R, D)`` to share ``D`` and device."""
    if emb.shape[1] != ref_emb.shape[1]:
        raise ValueError(
            f"ref_emb: expected embedding dim D={emb.shape[1]} to match emb, got {ref_emb.shape[1]}"
        )
    if emb.device != ref_emb.device:
        raise ValueError(f"ref_emb: expected device {emb.device} like emb, got {ref_emb.device}")


def check_positive(value: float, name: str, allow_zero: bool = False) -> float:
    """Require a finite positive (or non-negative) hyperparameter."""
    v = float(value)
    ok = (v >= 0.0 if allow_zero else v > 0.0) and v == v and v not in (float("inf"), float("-inf"))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite value {bound}, got {value!r}")
    return v
