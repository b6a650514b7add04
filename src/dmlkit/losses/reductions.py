"""Numerically safe masked reductions shared by the miners and aggregators.

All functions take a value matrix ``x (B, R)`` and a bool ``mask (B, R)`` and reduce over the last
dimension, touching only masked entries. Rows without any masked entry are *empty*: they get a finite
placeholder value (never NaN or inf) and a ``False`` in the returned validity vector, so callers decide
what an empty row means.

Speed. On the CPU two things dominate the elementwise cost of a pair loss: every fresh (B, R) tensor
(the allocator hands out new pages, which are faulted in on first touch) and boolean selection
(``torch.where``, ``masked_fill``), which is several times slower than float arithmetic. So masks
are turned into 0/1 float matrices once and applied by a dot product, or by moving excluded entries
by a large finite offset (:func:`offset_excluded`), with in-place updates of buffers owned here.
Memory: O(B R), one temporary per call unless stated.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

AnchorReduction = Literal["mean_valid", "mean_all", "mean_nonzero", "sum"]
ANCHOR_REDUCTIONS: tuple[str, ...] = ("mean_valid", "mean_all", "mean_nonzero", "sum")


def float_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """The bool ``mask`` as a fresh 0/1 matrix of ``dtype`` (converted through ``uint8``, which is
    several times faster than a direct bool-to-float cast on the CPU)."""
    return mask.view(torch.uint8).to(dtype)


def big_offset(dtype: torch.dtype) -> float:
    """A finite offset that dominates any loss or similarity value: ``finfo(dtype).max / 16``."""
    return torch.finfo(dtype).max / 16


def offset_excluded(x: Tensor, mask: Tensor, sign: float, out: Tensor | None = None) -> Tensor:
    """``x`` on ``mask`` and ``x + sign * big_offset`` (``sign = ±1``) elsewhere.

    A row-wise ``amax`` (``sign = -1``) or ``amin`` (``sign = +1``) of the result sees only masked
    entries; an empty row reduces to about ``∓finfo.max / 16``, a finite value below (above) any
    real entry. Masked entries are exact. ``out`` is an optional float buffer shaped like ``x`` to
    write into (saves an allocation); otherwise one (B, R) tensor is allocated.
    """
    buf = float_mask(mask, x.dtype) if out is None else out.copy_(mask.view(torch.uint8))
    return _offset_from_indicator(buf, x, sign)


def _offset_from_indicator(buf: Tensor, x: Tensor, sign: float) -> Tensor:
    """Turn the 0/1 float ``buf`` into ``x`` (where 1) or ``x + sign * big`` (where 0), in place."""
    big = sign * big_offset(x.dtype)
    return buf.mul_(-big).add_(big).add_(x)


def masked_sum_count(x: Tensor, mask: Tensor, nonzero: bool = False) -> tuple[Tensor, Tensor]:
    """``(Σ_{mask} x, count)``, both 0-dim: one dot product with the 0/1 mask (gradient: the mask).

    ``count`` is the number of masked entries, or with ``nonzero`` of those with ``x > 0``; it
    carries no gradient.
    """
    weights = float_mask(mask, x.dtype).reshape(-1)
    flat = x.reshape(-1)
    total = torch.dot(flat, weights)
    if nonzero:
        count = torch.dot(flat.detach().sign().clamp_min_(0.0), weights)
    else:
        count = weights.sum()
    return total, count


def masked_mean(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Row-wise mean of the masked entries; returns ``(values (B,), valid (B,))``, empty rows 0.

    The row sums are batched dot products (no (B, R) product is materialised).
    """
    weights = float_mask(mask, x.dtype)
    count = weights.sum(dim=1)
    with torch.autocast(device_type=x.device.type, enabled=False):  # bmm would be cast down
        total = torch.bmm(x.unsqueeze(1), weights.unsqueeze(2)).reshape(-1)
    return total / count.clamp_min(1.0), count > 0


def _exp_floor(dtype: torch.dtype) -> float:
    """Exponents are clamped here before ``exp``: ``e^{floor}`` is about ``1e16 * finfo.tiny``, so
    nothing reaches the (slow, denormal) underflow range."""
    return math.log(torch.finfo(dtype).tiny) + 16.0


class _MaskedLogSumExp(torch.autograd.Function):
    """Row-wise ``log([1 +] Σ_{mask} e^{c x})``; backward ``c e^{c x_ij - c m_i} / total_i``.

    The forward owns one (B, R) buffer: the mask turned into offsets, then shifted, scaled and
    exponentiated in place; it is saved and scaled row by row in the backward. Exponents below
    :func:`_exp_floor` (excluded entries, and entries whose weight is below ~1e-30 of the row's
    largest) are clamped and then set to exactly 0, which keeps ``exp`` out of its slow underflow
    path and leaves the value unchanged to working precision (``total >= 1``).
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, mask: Tensor, scale: float, add_one: bool
    ) -> tuple[Tensor, Tensor]:
        buf = float_mask(mask, x.dtype)
        valid = buf.sum(dim=1) > 0
        _offset_from_indicator(buf, x, -1.0)
        row_max = buf.amax(dim=1, keepdim=True)
        row_max = torch.where(valid[:, None], row_max, torch.zeros_like(row_max))
        if add_one:
            row_max = row_max.clamp_min(0.0)
        floor = _exp_floor(x.dtype)
        expo = buf.sub_(row_max).mul_(scale).clamp_(min=floor).exp_()
        F.threshold(expo, 2.0 * math.exp(floor), 0.0, inplace=True)
        total = expo.sum(dim=1)
        if add_one:
            total = total + torch.exp(-scale * row_max.squeeze(1))
        else:
            total = total + (~valid).to(total.dtype)
        ctx.save_for_backward(expo, total)
        ctx.scale = scale
        ctx.mark_non_differentiable(valid)
        return scale * row_max.squeeze(1) + torch.log(total), valid

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_value: Tensor, _grad_valid: Tensor | None
    ) -> tuple[Tensor, None, None, None]:
        expo, total = ctx.saved_tensors
        coef = grad_value * ctx.scale / total
        return expo * coef[:, None], None, None, None


def masked_logsumexp(
    x: Tensor, mask: Tensor, add_one: bool = False, scale: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Row-wise ``log(Σ_{j∈mask} e^{c x_ij})`` (or ``log(1 + Σ ...)`` when ``add_one``), ``c = scale``.

    Returns ``(values (B,), valid (B,))``. Empty rows give 0 (exactly right for ``add_one``, a
    placeholder otherwise). Max-subtracted, so finite for any finite ``x`` and any ``c > 0``; the
    gradient is ``c`` times the softmax weights of the row (with the implicit zero entry when
    ``add_one``), exactly 0 outside the mask. Half-precision ``x`` is reduced in float32. Memory:
    one (B, R) matrix, kept for the backward.
    """
    if not scale > 0 or math.isinf(scale):
        raise ValueError(f"scale: expected a finite value > 0, got {scale}")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # the exclusion offset needs float32 range
    value, valid = _MaskedLogSumExp.apply(x, mask, float(scale), bool(add_one))
    return value, valid


def reduce_anchors(per_anchor: Tensor, valid: Tensor, reduction: str) -> Tensor:
    """Combine per-anchor losses ``(B,)`` into a scalar.

    - ``mean_valid``: mean over anchors with at least one active pair (RevisitDML style);
    - ``mean_all``: sum / B, anchors without pairs count as 0 (official MS code, PML MeanReducer);
    - ``mean_nonzero``: mean over anchors whose loss is > 0 (PML AvgNonZeroReducer);
    - ``sum``: plain sum.
    The result is 0 (connected to the graph) when nothing qualifies. It equals
    ``anchor_finish(*anchor_partial(...), B, reduction)``, whose partial sums add over row blocks.
    """
    total, count = anchor_partial(per_anchor, valid, reduction)
    return anchor_finish(total, count, per_anchor.shape[0], reduction)


def anchor_partial(per_anchor: Tensor, valid: Tensor, reduction: str) -> tuple[Tensor, Tensor]:
    """``(Σ_valid loss, number of anchors the reduction divides by)`` of a block of anchors, both
    0-dim; both add over disjoint blocks of rows (the count carries no gradient)."""
    if reduction not in ANCHOR_REDUCTIONS:
        raise ValueError(f"reduction: expected one of {ANCHOR_REDUCTIONS}, got {reduction!r}")
    values = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    keep = valid & (values.detach() > 0) if reduction == "mean_nonzero" else valid
    return values.sum(), keep.sum().to(values.dtype)


def anchor_finish(total: Tensor, count: Tensor, rows: int, reduction: str) -> Tensor:
    """The reduced loss from :func:`anchor_partial`'s sums over all ``rows`` anchors."""
    if reduction == "sum":
        return total
    if reduction == "mean_all":
        return total / rows
    return total / count.clamp_min(1.0)
