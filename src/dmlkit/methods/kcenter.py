"""Greedy k-center (farthest-first traversal) per class, vectorised over classes.

For each class ``c`` with candidates ``x_c1..x_cP`` and fixed centres ``init_c1..init_cQ``::

    m_p = min_q |x_cp - init_cq|²
    repeat k times:
        p* = argmax_p m_p ;  pick x_cp* ;  m_p = min(m_p, |x_cp - x_cp*|²) ;  m_p* = -inf

Each pick is a distinct candidate index (``P >= k`` is required), and the picked rows are the
candidates themselves, bit for bit. With ``init = 0`` the first pick is the candidate of largest
norm. The covering radius of the pool by ``init ∪ picks`` is at most twice the best achievable with
``k`` extra centres (Gonzalez 1985; the fixed centres do not change the argument).

Memory: classes are processed in chunks so that one ``(chunk, P, D)`` temporary holds at most
``chunk_elements`` numbers (default 2^22, 16 MB in float32); time O(C P D (Q + k)).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(pool: Tensor, init: Tensor, k: int) -> None:
    if pool.ndim != 3 or init.ndim != 3:
        raise ValueError(
            f"pool, init: expected (C, P, D) and (C, Q, D), got {tuple(pool.shape)} and "
            f"{tuple(init.shape)}"
        )
    if init.shape[0] != pool.shape[0] or init.shape[2] != pool.shape[2] or init.shape[1] < 1:
        raise ValueError(
            f"init: expected (C={pool.shape[0]}, Q >= 1, D={pool.shape[2]}), "
            f"got {tuple(init.shape)}"
        )
    if not 1 <= k <= pool.shape[1]:
        raise ValueError(f"k: expected 1 <= k <= P={pool.shape[1]} candidates, got {k}")
    if not (torch.isfinite(pool).all() and torch.isfinite(init).all()):
        raise ValueError("pool, init: expected finite values, got NaN or inf")


def _sq_dist(pool: Tensor, center: Tensor) -> Tensor:
    """``|pool[c, p] - center[c]|²`` for ``pool (c, P, D)``, ``center (c, D)`` -> ``(c, P)``."""
    diff = pool - center[:, None, :]
    return torch.linalg.vecdot(diff, diff)


def _select_chunk(pool: Tensor, init: Tensor, k: int) -> Tensor:
    nearest = _sq_dist(pool, init[:, 0])
    for q in range(1, init.shape[1]):
        nearest = torch.minimum(nearest, _sq_dist(pool, init[:, q]))
    rows = torch.arange(pool.shape[0], device=pool.device)
    picks = torch.empty(pool.shape[0], k, dtype=torch.long, device=pool.device)
    for t in range(k):
        idx = nearest.argmax(dim=1)
        picks[:, t] = idx
        nearest = torch.minimum(nearest, _sq_dist(pool, pool[rows, idx]))
        nearest[rows, idx] = -torch.inf
    return picks


@torch.no_grad()
def greedy_k_center(
    pool: Tensor, init: Tensor, k: int, chunk_elements: int = 1 << 22
) -> tuple[Tensor, Tensor]:
    """Pick ``k`` centres per class from ``pool (C, P, D)`` given fixed centres ``init (C, Q, D)``.

    Returns ``(centers (C, k, D), index (C, k))`` with ``centers[c, t] = pool[c, index[c, t]]``
    exactly, in the order picked (module docstring).
    """
    _check(pool, init, k)
    init = init.to(pool.dtype)
    num_classes, candidates, dim = pool.shape
    chunk = max(1, chunk_elements // (candidates * dim))
    index = torch.cat(
        [
            _select_chunk(pool[s : s + chunk], init[s : s + chunk], k)
            for s in range(0, num_classes, chunk)
        ]
    )
    rows = torch.arange(num_classes, device=pool.device)[:, None]
    return pool[rows, index], index
