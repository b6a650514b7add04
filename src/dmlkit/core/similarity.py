"""Similarity matrices between embeddings and references.

Every similarity is "higher = more similar", so losses are written once:

=================  =========================================  ===========
name               S_ij                                       range
=================  =========================================  ===========
``cosine``         <x_i/|x_i|, y_j/|y_j|>                      [-1, 1]
``dot``            <x_i, y_j>                                  R
``neg_sq_euclidean`` -|x_i - y_j|^2                            (-inf, 0]
``neg_euclidean``  -|x_i - y_j|  (gradient-safe at 0)           (-inf, 0]
``neg_snr``        -var(x_i - y_j) / var(x_i)                  (-inf, 0]
=================  =========================================  ===========

Shapes: ``x (B, D)``, ``y (R, D)`` -> ``S (B, R)``. The matrix is always computed and returned in
float32 (or float64 when the inputs are float64), also under ``torch.autocast``: half-precision
similarities lose the resolution that margins of 0.1 need. Memory: O(B R).

Cosine normalises each row with :func:`unit_rows`, which rescales a row by its largest entry
first when its norm overflows or underflows the dtype (norms near 1e19 or below 1e-18 in float32
square to infinity or to nothing): such rows get their true direction, not a zero vector. A row
that is exactly zero has no direction and is refused.

When ``y is x`` (the batch against itself) the Gram matrix ``G = X Xᵀ`` is built by
:class:`_SelfGram`, whose backward is the single product ``(dS + dSᵀ) X`` instead of autograd's two
(``dS X`` for the left factor plus ``dSᵀ X`` for the right one): one matrix product fewer per step.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

SimilarityName = Literal["cosine", "dot", "neg_sq_euclidean", "neg_euclidean", "neg_snr"]
SIMILARITIES: tuple[str, ...] = ("cosine", "dot", "neg_sq_euclidean", "neg_euclidean", "neg_snr")

_EPS = 1e-12
# Row norms inside this range are computed exactly by sqrt(sum(x^2)) in float32 and float64.
_SAFE_NORM = (1e-15, 1e15)


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class _SelfGram(torch.autograd.Function):
    """``G = X Xᵀ`` for ``X (B, D)``; backward ``dX = (dG + dGᵀ) X`` (one (B, B) sum, one product)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x @ x.T

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        x: Tensor = ctx.saved_tensors[0]
        with torch.autocast(device_type=grad.device.type, enabled=False):
            return (grad + grad.T) @ x


def _gram(x: Tensor, y: Tensor, same: bool) -> Tensor:
    if same:
        gram: Tensor = _SelfGram.apply(x)
        return gram
    return x @ y.T


def similarity_matrix(x: Tensor, y: Tensor, kind: str = "cosine") -> Tensor:
    """Return ``S (B, R)`` of ``kind`` between rows of ``x (B, D)`` and ``y (R, D)``.

    ``neg_euclidean`` clamps the squared distance at 1e-12 before the square root, so duplicates
    and self-pairs get a finite (zero) gradient instead of NaN. Finite inputs whose similarities
    overflow the compute dtype (``dot`` or Euclidean of rows with norms near 1e19 in float32)
    raise ``ValueError`` instead of returning infinities that turn into NaN losses.
    """
    if kind not in SIMILARITIES:
        raise ValueError(f"similarity: expected one of {SIMILARITIES}, got {kind!r}")
    return _check_overflow(_similarity(x, y, kind), x, y, kind)


def _check_overflow(sim: Tensor, x: Tensor, y: Tensor, kind: str) -> Tensor:
    """``sim``, or ``ValueError`` when it holds an infinity or NaN (one reduction when finite)."""
    if bool(torch.isfinite(sim.detach().sum())) or bool(torch.isfinite(sim.detach()).all()):
        return sim
    norm = max(float(x.detach().abs().amax()), float(y.detach().abs().amax()))
    raise ValueError(
        f"similarity {kind!r}: expected similarities that fit in {sim.dtype}, got non-finite "
        f"values from inputs with entries up to {norm:.3g} in magnitude; normalise or rescale "
        "the embeddings"
    )


class _UnitRows(torch.autograd.Function):
    """``y = x / |x|`` row-wise for rows of in-range norm; backward ``(g - y <g, y>) / |x|`` in two
    passes (autograd's version of ``x / |x|`` takes about seven over the ``(N, D)`` matrix)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, norm: Tensor) -> Tensor:
        unit = x / norm
        ctx.save_for_backward(unit, norm)
        return unit

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        unit, norm = ctx.saved_tensors
        along = torch.linalg.vecdot(grad, unit).unsqueeze(1)
        return torch.addcmul(grad, unit, along, value=-1.0).div_(norm), None


def unit_rows(x: Tensor, name: str = "emb") -> Tensor:
    """``x_i / |x_i|`` for every row of ``x (N, D)`` (floating point, any dtype).

    Rows whose norm leaves ``[1e-15, 1e15]`` are first divided by their largest absolute entry
    (a constant for autograd: ``x/|x|`` is scale invariant, so the gradient is exactly that of
    ``x/|x|``), so tiny and huge rows keep their direction instead of becoming zero. ``ValueError``
    naming ``name`` and the rows when a row is exactly zero (it has no direction). Memory: O(N D).
    """
    norm = torch.linalg.vector_norm(x.detach(), dim=1, keepdim=True)
    low, high = _SAFE_NORM
    if bool(((norm >= low) & (norm <= high)).all()):
        unit: Tensor = _UnitRows.apply(x, norm)
        return unit
    scale = x.detach().abs().amax(dim=1, keepdim=True)
    zero = torch.nonzero(scale.squeeze(1) == 0).flatten().tolist()
    if zero:
        shown = ", ".join(map(str, zero[:8])) + (", ..." if len(zero) > 8 else "")
        raise ValueError(
            f"{name}: expected rows with a direction for cosine similarity, got {len(zero)} "
            f"all-zero row(s) (rows {shown})"
        )
    scaled = x / scale
    return _UnitRows.apply(scaled, torch.linalg.vector_norm(scaled.detach(), dim=1, keepdim=True))


def cosine_rows(x: Tensor, name: str = "emb") -> Tensor:
    """:func:`unit_rows` of ``x`` in the compute dtype (float32; float64 for float64 input),
    outside autocast: the operand of every cosine similarity."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return unit_rows(x.to(_compute_dtype(x)), name)


def inner(x: Tensor, y: Tensor) -> Tensor:
    """``x yᵀ (B, R)`` for ``x (B, D)``, ``y (R, D)`` in their common dtype outside autocast: the
    cosine similarities when both come from :func:`cosine_rows`."""
    dtype = torch.promote_types(x.dtype, y.dtype)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return x.to(dtype) @ y.to(dtype).T


def _similarity(x: Tensor, y: Tensor, kind: str) -> Tensor:
    dtype = _compute_dtype(x)
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf, yf = x.to(dtype), y.to(dtype)
        same = y is x
        if kind == "cosine":
            xf = unit_rows(xf, "emb")
            return _gram(xf, xf if same else unit_rows(yf, "ref_emb"), same)
        if kind == "dot":
            return _gram(xf, yf, same)
        if kind == "neg_snr":
            return -_snr(xf, yf, same)
        x_sq = (xf * xf).sum(1)
        y_sq = x_sq if same else (yf * yf).sum(1)
        sq = x_sq[:, None] + y_sq[None, :] - 2.0 * _gram(xf, yf, same)
        sq = sq.clamp_min(0.0)
        if kind == "neg_sq_euclidean":
            return -sq
        return -sq.clamp_min(_EPS).sqrt()


def _centred(x: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """Rows minus their mean, as unit rows and norms. ``ValueError`` for a constant row: one whose
    spread is within rounding of its magnitude (8 machine epsilons of its largest entry), where
    the centred row is rounding noise with no meaningful direction."""
    centred = x - x.mean(dim=1, keepdim=True)
    scale = centred.detach().abs().amax(dim=1)
    noise = 8.0 * torch.finfo(x.dtype).eps * x.detach().abs().amax(dim=1)
    flat = torch.nonzero(scale <= noise).flatten().tolist()
    if flat:
        raise ValueError(
            f"{name}: expected rows with a non-zero variance for the signal-to-noise ratio, got "
            f"{len(flat)} constant row(s) (rows {', '.join(map(str, flat[:8]))})"
        )
    norm = scale * torch.linalg.vector_norm(centred / scale[:, None], dim=1)
    return unit_rows(centred, name), norm


def _snr(x: Tensor, y: Tensor, same: bool) -> Tensor:
    """Signal-to-noise ratio distance (Yuan et al. 2019) ``var(x_i - y_j) / var(x_i)``, variances
    over the D features; with centred rows ``c``, ``|c(x_i) - c(y_j)|² / |c(x_i)|²``, computed as
    ``(1 - r)² + 2 r (1 - cos)`` with ``r = |c(y_j)| / |c(x_i)|`` (no (B, R, D) tensor)."""
    ux, nx = _centred(x, "emb")
    uy, ny = (ux, nx) if same else _centred(y, "ref_emb")
    ratio = ny[None, :] / nx[:, None]
    cos = _gram(ux, uy, same)
    return (1.0 - ratio).square() + 2.0 * ratio * (1.0 - cos)


class Similarity(torch.nn.Module):
    """Module form of :func:`similarity_matrix`, for composition in losses and configs."""

    def __init__(self, kind: str = "cosine") -> None:
        super().__init__()
        if kind not in SIMILARITIES:
            raise ValueError(f"similarity: expected one of {SIMILARITIES}, got {kind!r}")
        self.kind = kind

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return similarity_matrix(x, y, self.kind)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
