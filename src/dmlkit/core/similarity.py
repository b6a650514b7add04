"""Similarity matrices between embeddings and references.

Every similarity is "higher = more similar", so losses are written once:

=================  =========================================  ===========
name               S_ij                                       range
=================  =========================================  ===========
``cosine``         <x_i/|x_i|, y_j/|y_j|>                      [-1, 1]
``dot``            <x_i, y_j>                                  R
``neg_sq_euclidean`` -|x_i - y_j|^2                            (-inf, 0]
``neg_euclidean``  -|x_i - y_j|  (gradient-safe at 0)           (-inf, 0]
=================  =========================================  ===========

Shapes: ``x (B, D)``, ``y (R, D)`` -> ``S (B, R)``. The matrix is always computed and returned in
float32 (or float64 when the inputs are float64), also under ``torch.autocast``: half-precision
similarities lose the resolution that margins of 0.1 need. Memory: O(B R).

When ``y is x`` (the batch against itself) the Gram matrix ``G = X Xᵀ`` is built by
:class:`_SelfGram`, whose backward is the single product ``(dS + dSᵀ) X`` instead of autograd's two
(``dS X`` for the left factor plus ``dSᵀ X`` for the right one): one matrix product fewer per step.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

SimilarityName = Literal["cosine", "dot", "neg_sq_euclidean", "neg_euclidean"]
SIMILARITIES: tuple[str, ...] = ("cosine", "dot", "neg_sq_euclidean", "neg_euclidean")

_EPS = 1e-12


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


def _similarity(x: Tensor, y: Tensor, kind: str) -> Tensor:
    dtype = _compute_dtype(x)
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf, yf = x.to(dtype), y.to(dtype)
        same = y is x
        if kind == "cosine":
            xf = F.normalize(xf, dim=1, eps=_EPS)
            return _gram(xf, xf if same else F.normalize(yf, dim=1, eps=_EPS), same)
        if kind == "dot":
            return _gram(xf, yf, same)
        x_sq = (xf * xf).sum(1)
        y_sq = x_sq if same else (yf * yf).sum(1)
        sq = x_sq[:, None] + y_sq[None, :] - 2.0 * _gram(xf, yf, same)
        sq = sq.clamp_min(0.0)
        if kind == "neg_sq_euclidean":
            return -sq
        return -sq.clamp_min(_EPS).sqrt()


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
