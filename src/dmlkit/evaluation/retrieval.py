"""Retrieval metrics, per query, from a ranked list of references.

Two inputs describe a query's ranking (references sorted best first, ties by lower index):

- ``relevant (Q, K)`` bool: whether the j-th retrieved reference is relevant to query i, with
  ``num_relevant (Q,)``, R_i, the number of references relevant to query i (itself excluded);
- ``first_rank (Q,)`` int64: the 0-based rank of the first relevant reference in the full
  ranking, ``-1`` when there is none (:func:`first_relevant_rank` reads it off a ``relevant``
  list; the evaluator computes it exactly over all references).

Queries with R_i = 0 must be removed before (see :mod:`.evaluator`). Every function returns
per-query values ``(Q,)`` in float64; averaging is the caller's.

- Recall@k (DML papers):  1[first_rank_i < k], i.e. any relevant among the top k
- MRR:                    1 / (first_rank_i + 1), 0 when no reference is relevant
- Precision@k:            (1/k) Σ_{j<k} rel_ij
- R-Precision:            (1/R_i) Σ_{j<R_i} rel_ij
- MAP@R (Musgrave 2020):  (1/R_i) Σ_{j<R_i} P_i(j) rel_ij,  P_i(j) = (1/j) Σ_{l<=j} rel_il
- MAP@k:                  (1/min(R_i, k)) Σ_{j<k} P_i(j) rel_ij

>>> import torch
>>> rel = torch.tensor([[True, False, True, False], [False, True, True, True]])
>>> r = torch.tensor([2, 3])
>>> first = first_relevant_rank(rel)
>>> first.tolist(), recall_at_k(first, 1).tolist(), mrr(first).tolist()
([0, 1], [1.0, 0.0], [1.0, 0.5])
>>> r_precision(rel, r).tolist(), map_at_r(rel, r).tolist()
([0.5, 0.6666666666666666], [0.5, 0.38888888888888884])
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_k(relevant: Tensor, k: int) -> None:
    if not 1 <= k <= relevant.shape[1]:
        raise ValueError(f"k: expected 1 <= k <= {relevant.shape[1]} retrieved, got {k}")


def first_relevant_rank(relevant: Tensor) -> Tensor:
    """0-based rank of the first relevant entry of each row of ``relevant (Q, K)``, -1 if none.

    >>> first_relevant_rank(torch.tensor([[False, True, True], [False, False, False]])).tolist()
    [1, -1]
    """
    first = torch.argmax(relevant.to(torch.uint8), dim=1)
    return torch.where(relevant.any(1), first, torch.full_like(first, -1))


def recall_at_k(first_rank: Tensor, k: int) -> Tensor:
    """``R@k_i = 1[0 <= first_rank_i < k]``: a hit if any of the top ``k`` is relevant (DML papers).

    >>> recall_at_k(torch.tensor([1, -1, 4]), 2).tolist()
    [1.0, 0.0, 0.0]
    """
    if k < 1:
        raise ValueError(f"k: expected k >= 1, got {k}")
    return ((first_rank >= 0) & (first_rank < k)).double()


def precision_at_k(relevant: Tensor, k: int) -> Tensor:
    """``P@k_i = (1/k) Σ_{j<k} rel_ij``.

    >>> precision_at_k(torch.tensor([[True, False, True]]), 2).tolist()
    [0.5]
    """
    _check_k(relevant, k)
    return relevant[:, :k].double().mean(1)


def _within(relevant: Tensor, limit: Tensor) -> Tensor:
    cols = torch.arange(relevant.shape[1], device=relevant.device)
    return relevant & (cols[None, :] < limit[:, None])


def r_precision(relevant: Tensor, num_relevant: Tensor) -> Tensor:
    """``RP_i = (1/R_i) Σ_{j<R_i} rel_ij``: precision over the first R_i retrieved.

    >>> r_precision(torch.tensor([[True, False, True]]), torch.tensor([2])).tolist()
    [0.5]
    """
    if relevant.shape[1] < int(num_relevant.max()):
        raise ValueError("relevant: expected at least max(R) retrieved columns for R-precision")
    return _within(relevant, num_relevant).sum(1).double() / num_relevant.double()


def _average_precision(relevant: Tensor, limit: Tensor, denominator: Tensor) -> Tensor:
    hits = _within(relevant, limit)
    ranks = torch.arange(1, relevant.shape[1] + 1, device=relevant.device, dtype=torch.float64)
    precision = hits.cumsum(1).double() / ranks[None, :]
    return (precision * hits).sum(1) / denominator.double()


def map_at_r(relevant: Tensor, num_relevant: Tensor) -> Tensor:
    """``MAP@R_i = (1/R_i) Σ_{j<R_i} P_i(j) rel_ij`` (Musgrave et al. 2020).

    >>> map_at_r(torch.tensor([[False, True, True]]), torch.tensor([2])).tolist()
    [0.25]
    """
    if relevant.shape[1] < int(num_relevant.max()):
        raise ValueError("relevant: expected at least max(R) retrieved columns for MAP@R")
    return _average_precision(relevant, num_relevant, num_relevant)


def map_at_k(relevant: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    """``MAP@k_i = (1/min(R_i, k)) Σ_{j<k} P_i(j) rel_ij``.

    >>> map_at_k(torch.tensor([[False, True, True]]), torch.tensor([2]), 3).tolist()
    [0.5833333333333333]
    """
    _check_k(relevant, k)
    limit = torch.full_like(num_relevant, k)
    return _average_precision(relevant, limit, torch.minimum(num_relevant, limit))


def mrr(first_rank: Tensor) -> Tensor:
    """``1 / (first_rank_i + 1)``, the reciprocal rank of the first relevant reference (0 if none).

    >>> mrr(torch.tensor([2, -1, 0])).tolist()
    [0.3333333333333333, 0.0, 1.0]
    """
    found = first_rank >= 0
    return torch.where(
        found, 1.0 / (first_rank.double() + 1.0), torch.zeros_like(first_rank).double()
    )
