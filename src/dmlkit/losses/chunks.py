"""Bounded-memory iteration over anchors and triplets.

Rules that look at triplets ``(a, p, n)`` (``p`` a positive, ``n`` a negative of anchor ``a``) must
not allocate a ``B x R x R`` tensor. :func:`row_chunks` cuts the ``B`` anchors into slices of at
most ``budget // (R R)`` rows (at least one) for dense per-anchor ``(R, R)`` tables: memory
O(budget + R R). :func:`triplet_chunks` lists the triplets themselves as flat index vectors, about
``budget`` at a time, from the two masks alone: memory O(B R + budget), time O(B R + T) for ``T``
triplets.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

DEFAULT_BUDGET = 1 << 22  # elements of one chunk: 32 MiB in float64


def row_chunks(rows: int, per_row: int, budget: int = DEFAULT_BUDGET) -> Iterator[slice]:
    """Consecutive slices covering ``range(rows)``, each of at most ``max(1, budget // per_row)``
    rows."""
    step = max(1, budget // max(per_row, 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def triplet_chunks(
    pos: Tensor, neg: Tensor, budget: int = DEFAULT_BUDGET
) -> Iterator[tuple[Tensor, Tensor]]:
    """Every triplet ``(a, p, n)`` with ``pos[a, p]`` and ``neg[a, n]`` (bool ``(B, R)`` masks),
    once, as flat row-major indices into ``(B, R)``: ``ap = a R + p`` and ``an = a R + n``, both
    ``(T_chunk,)`` (flat indices make gathers and scatter-adds single ``index_select`` /
    ``index_add_`` calls). A chunk holds the triplets of consecutive positive pairs, at most
    ``budget`` of them unless one positive pair alone has more negatives.
    """
    cols = pos.shape[1]
    ap_all = torch.nonzero(pos.reshape(-1)).squeeze(1)
    anchor = torch.div(ap_all, cols, rounding_mode="floor")
    negatives_of = neg.sum(dim=1)
    an_all = torch.nonzero(neg.reshape(-1)).squeeze(1)  # row-major: grouped by anchor
    first_neg = (negatives_of.cumsum(0) - negatives_of).index_select(0, anchor)
    reps = negatives_of.index_select(0, anchor)  # triplets of each positive pair
    ends = reps.cumsum(0)
    # position of the pair's first triplet in the list of all triplets, minus its first negative
    shift = (ends - reps) - first_neg
    lo, pairs = 0, ap_all.numel()
    while lo < pairs:
        base = int(ends[lo] - reps[lo])
        hi = max(lo + 1, int(torch.searchsorted(ends, base + budget, right=True)))
        pair = torch.repeat_interleave(torch.arange(lo, hi, device=pos.device), reps[lo:hi])
        slot = torch.arange(base, int(ends[hi - 1]), device=pos.device)
        yield (
            ap_all.index_select(0, pair),
            an_all.index_select(0, slot - shift.index_select(0, pair)),
        )
        lo = hi
