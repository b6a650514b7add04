"""Numerically safe masked reductions shared by the aggregators.

All functions take a value matrix ``x (B, R)`` and a bool ``mask (B, R)`` and reduce over the last
dimension, touching only masked entries. Rows without any masked entry are *empty*: they get a finite
placeholder value (never NaN or inf) and a ``False`` in the returned validity vector, so callers decide
what an empty row means. Memory: O(B R) for one temporary.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

AnchorReduction = Literal["mean_valid", "mean_all", "mean_nonzero", "sum"]
ANCHOR_REDUCTIONS: tuple[str, ...] = ("mean_valid", "mean_all", "mean_nonzero", "sum")


def masked_logsumexp(x: Tensor, mask: Tensor, add_one: bool = False) -> tuple[Tensor, Tensor]:
    """Row-wise ``log(sum_j∈mask exp x_ij)`` (or ``log(1 + sum ...)`` when ``add_one``).

    Returns ``(values (B,), valid (B,))``. Empty rows give 0 (exactly right for ``add_one``,
    a placeholder otherwise). Max-subtracted, so finite for any finite ``x``; gradients are the
    softmax weights over the row (with the implicit zero entry when ``add_one``).
    """
    valid = mask.any(dim=1)
    filled = x.masked_fill(~mask, float("-inf"))
    row_max = filled.amax(dim=1, keepdim=True).detach()
    row_max = torch.where(valid[:, None], row_max, torch.zeros_like(row_max))
    if add_one:
        row_max = row_max.clamp_min(0.0)
    total = torch.exp(filled - row_max).sum(dim=1)
    if add_one:
        total = total + torch.exp(-row_max.squeeze(1))
    else:
        total = total + (~valid).to(total.dtype)
    return row_max.squeeze(1) + torch.log(total), valid


def masked_mean(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Row-wise mean of the masked entries; returns ``(values (B,), valid (B,))``, empty rows 0."""
    count = mask.sum(dim=1)
    total = torch.where(mask, x, 0.0).sum(dim=1)
    return total / count.clamp_min(1).to(total.dtype), count > 0


def reduce_anchors(per_anchor: Tensor, valid: Tensor, reduction: str) -> Tensor:
    """Combine per-anchor losses ``(B,)`` into a scalar.

    - ``mean_valid``: mean over anchors with at least one active pair (RevisitDML style);
    - ``mean_all``: sum / B, anchors without pairs count as 0 (official MS code, PML MeanReducer);
    - ``mean_nonzero``: mean over anchors whose loss is > 0 (PML AvgNonZeroReducer);
    - ``sum``: plain sum.
    The result is 0 (connected to the graph) when nothing qualifies.
    """
    if reduction not in ANCHOR_REDUCTIONS:
        raise ValueError(f"reduction: expected one of {ANCHOR_REDUCTIONS}, got {reduction!r}")
    values = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    total = values.sum()
    if reduction == "sum":
        return total
    if reduction == "mean_all":
        return total / per_anchor.shape[0]
    keep = valid & (values > 0) if reduction == "mean_nonzero" else valid
    return total / keep.sum().clamp_min(1).to(total.dtype)
