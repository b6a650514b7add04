"""Label relations: which (row, ref) pairs are positive and which are negative.

Three label forms are accepted:

- class ids ``labels (B,)`` int: ``pos_ij = (y_i == y_j)``, ``neg_ij = (y_i != y_j)``;
- multi-hot ``labels (B, C)`` int/bool: ``pos_ij = <y_i, y_j> > 0`` (share at least one label),
  ``neg_ij = not pos_ij``;
- a user ``relation_fn(labels, ref_labels) -> (pos, neg)`` returning bool ``(B, R)`` masks; pairs
  that are neither positive nor negative are ignored.

Self-exclusion: when the reference set is the batch itself, ``self_index`` marks which reference
column is each row's own copy (``arange(B)`` for ``ref = batch``; ``-1`` for rows with no copy, as in
a memory bank). Those entries are removed from both masks. Memory: O(B R) bools.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

RelationFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def relation_masks(
    labels: Tensor,
    ref_labels: Tensor,
    relation_fn: RelationFn | None = None,
    self_index: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Return bool masks ``pos, neg (B, R)`` for ``labels`` (B,...) against ``ref_labels`` (R,...)."""
    if relation_fn is not None:
        pos, neg = relation_fn(labels, ref_labels)
        expected = (labels.shape[0], ref_labels.shape[0])
        for name, m in (("pos", pos), ("neg", neg)):
            if not isinstance(m, Tensor) or m.dtype != torch.bool or tuple(m.shape) != expected:
                got = (m.dtype, tuple(m.shape)) if isinstance(m, Tensor) else type(m).__name__
                raise ValueError(
                    f"relation_fn: expected bool {name} mask of shape {expected}, got {got}"
                )
        if bool((pos & neg).any()):
            raise ValueError("relation_fn: a pair cannot be both positive and negative")
        pos, neg = pos.clone(), neg.clone()  # the self-exclusion below writes in place
    elif labels.ndim == 1:
        if ref_labels.ndim != 1:
            raise ValueError(
                f"ref_labels: expected shape (R,) like labels, got {tuple(ref_labels.shape)}"
            )
        pos = labels[:, None] == ref_labels[None, :]
        neg = ~pos
    else:
        if ref_labels.ndim != 2 or ref_labels.shape[1] != labels.shape[1]:
            raise ValueError(
                f"ref_labels: expected multi-hot shape (R, {labels.shape[1]}), "
                f"got {tuple(ref_labels.shape)}"
            )
        pos = (labels.to(torch.float32) @ ref_labels.to(torch.float32).T) > 0
        neg = ~pos
    if self_index is not None:
        rows = torch.nonzero(self_index >= 0).squeeze(1)
        if rows.numel() > 0:
            cols = self_index[rows]
            pos[rows, cols] = False
            neg[rows, cols] = False
    return pos, neg
