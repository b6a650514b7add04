"""One sweep over the query x reference scores: the top-k list and the exact first-relevant rank.

For every query, in one pass over blocks of scores (see :mod:`.knn`):

- ``index (Q, k)``: the top-k references, best first, ties by lower index (as :func:`.knn.knn`);
- ``first_rank (Q,)``: the 0-based rank of the first relevant reference in the *full* ranking,
  ``#{j: s_ij > b_i} + #{j < j*: s_ij = b_i}`` with ``b_i`` the best relevant score and ``j*`` the
  lowest relevant index reaching it; ``-1`` if no reference is relevant. It is read off the top-k
  list when a relevant reference is there; only the remaining queries are scored in full.

Relevance: the same class id for labels ``(N,)``, at least one shared label for multi-hot
``(N, C)``. With ``ref=None`` the queries are the references and each query's own row is excluded
by index. Memory: the score block and the full scoring of queries without a relevant reference
in their top k each take about half of ``memory_bytes``.

>>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.9]])
>>> labels = torch.tensor([0, 1, 0, 1])
>>> out = rank_references(emb, labels, None, None, k=1)
>>> out.index.tolist(), out.first_rank.tolist()
([[1], [0], [3], [2]], [2, 1, 2, 1])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dmlkit.evaluation.knn import DEFAULT_MEMORY_BYTES, similarity_argument, topk_blocks
from dmlkit.evaluation.retrieval import first_relevant_rank


@dataclass
class Ranking:
    """Top-k reference indices ``(Q, k)`` int64 and first-relevant ranks ``(Q,)`` int64 (CPU)."""

    index: Tensor
    first_rank: Tensor


def label_relevance(q_labels: Tensor, r_labels: Tensor) -> Tensor:
    """``(Q, R)`` bool: reference j relevant to query i (same id, or a shared multi-hot label)."""
    if q_labels.ndim == 1:
        return q_labels[:, None] == r_labels[None, :]
    return (q_labels.float() @ r_labels.float().T) > 0


def neighbour_relevance(
    q_labels: Tensor, r_labels: Tensor, index: Tensor, memory_bytes: int = DEFAULT_MEMORY_BYTES
) -> Tensor:
    """``(Q, K)`` bool: whether the reference ``index[i, j]`` is relevant to query i.

    Chunked over queries so the gathered labels ``(rows, K[, C])`` stay under ``memory_bytes``.
    """
    per_row = index.shape[1] * (8 if r_labels.ndim == 1 else r_labels.shape[1])
    step = max(1, memory_bytes // max(per_row, 1))
    if r_labels.ndim == 1:
        parts = [
            r_labels[idx] == q[:, None]
            for q, idx in zip(q_labels.split(step), index.split(step), strict=True)
        ]
    else:
        r_bool, q_bool = r_labels.bool(), q_labels.bool()
        parts = [
            (r_bool[idx] & q[:, None, :]).any(-1)
            for q, idx in zip(q_bool.split(step), index.split(step), strict=True)
        ]
    return torch.cat(parts) if parts else torch.zeros(0, index.shape[1], dtype=torch.bool)


def _full_first_rank(s: Tensor, rel: Tensor) -> Tensor:
    """Exact first-relevant rank of each row of scores ``s (m, R)`` with relevance ``rel``."""
    best = s.masked_fill(~rel, float("-inf")).max(dim=1, keepdim=True).values
    at_best = s == best
    first_idx = (rel & at_best).to(torch.uint8).argmax(dim=1, keepdim=True)
    cols = torch.arange(s.shape[1], device=s.device)[None, :]
    rank = (s > best).sum(1) + (at_best & (cols < first_idx)).sum(1)
    return torch.where(rel.any(1), rank, torch.full_like(rank, -1))


def rank_references(
    query: Tensor,
    q_labels: Tensor,
    ref: Tensor | None,
    r_labels: Tensor | None,
    k: int,
    similarity: str = "cosine",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    device: torch.device | str | None = None,
    *,
    metric: str | None = None,
) -> Ranking:
    """Top-``k`` list and exact first-relevant rank of every query under ``similarity``
    (``metric``: its deprecated former keyword); see the module docstring.

    Shapes: ``query (Q, D)``, ``q_labels (Q,)`` or ``(Q, C)``, ``ref (R, D)`` and ``r_labels``
    likewise, or both None for leave-one-out on the queries. Inputs are assumed validated (by
    :func:`.evaluator.evaluate`); ``1 <= k <=`` the number of references available.
    """
    similarity = similarity_argument(similarity, metric, "rank_references")
    dev = torch.device(device) if device is not None else query.device
    ql = q_labels.to(dev)
    rl = ql if r_labels is None else r_labels.to(dev)
    # rows scored in full at a time: ~16 bytes of scratch per score, half the budget
    piece = max(1, memory_bytes // (32 * rl.shape[0]))
    indices, ranks = [], []
    for start, s, idx, _ in topk_blocks(query, ref, k, similarity, memory_bytes, dev):
        block_labels = ql[start : start + s.shape[0]]
        first = first_relevant_rank(neighbour_relevance(block_labels, rl, idx, memory_bytes))
        for rows in torch.nonzero(first < 0).squeeze(1).split(piece):
            rel = label_relevance(block_labels[rows], rl)
            if ref is None:
                rel[torch.arange(rows.numel(), device=dev), rows + start] = False
            first[rows] = _full_first_rank(s[rows], rel)
        indices.append(idx.cpu())
        ranks.append(first.cpu())
    return Ranking(torch.cat(indices), torch.cat(ranks))
