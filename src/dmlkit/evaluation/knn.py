"""Exact k-nearest neighbours, chunked over queries under a memory bound.

``knn(query (Q, D), ref (R, D) | None, k)`` returns ``(indices (Q, k) int64, scores (Q, k) float32)``
on the CPU, sorted best first. ``ref=None`` searches the queries among themselves and removes each
query's own row *by index*, so duplicates of a query elsewhere stay retrievable. Scores are
similarities (``cosine``, ``dot``) or negated squared distances (``euclidean``):

    cosine:     s_ij = q_i·r_j / (|q_i| |r_j|)
    dot:        s_ij = q_i·r_j
    euclidean:  s_ij = -|q_i - r_j|^2 = 2 q_i·r_j - |r_j|^2 - |q_i|^2

Ties are broken by the lower reference index, so results are deterministic across chunk sizes and
devices.

Memory: one block of ``rows x R`` float32 scores, reused from block to block, sized with its
top-k scratch to stay under ``memory_bytes`` (default 1 GiB); time O(Q R D). ``backend="faiss"``
uses an exact flat faiss index instead (``pip install dmlkit[faiss]``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dmlkit.core.checks import check_embeddings
from dmlkit.core.similarity import unit_rows

SIMILARITIES: tuple[str, ...] = ("cosine", "dot", "euclidean")
DEFAULT_MEMORY_BYTES = 1 << 30


def similarity_argument(similarity: str, metric: str | None, where: str) -> str:
    """The similarity a public function was given: ``similarity``, or the value of ``metric``,
    its former keyword, with a ``DeprecationWarning`` (``TypeError`` when both are given)."""
    if metric is None:
        return similarity
    if similarity != "cosine":
        raise TypeError(
            f"{where}: got similarity={similarity!r} and metric={metric!r}; pass similarity= "
            "only (metric= is its former name)"
        )
    warnings.warn(
        f"{where}: the keyword metric= is deprecated, pass similarity={metric!r}",
        DeprecationWarning,
        stacklevel=3,
    )
    if metric not in SIMILARITIES:
        raise ValueError(
            f"metric: expected one of {SIMILARITIES}, got {metric!r} (metric= is the deprecated "
            "name of similarity=)"
        )
    return metric


def chunk_rows(num_ref: int, memory_bytes: int) -> int:
    """Rows per block so that two ``rows x num_ref`` float32 buffers (scores and their
    reduction scratch) fit in ``memory_bytes``; at least one row."""
    return max(1, int(memory_bytes) // (8 * max(num_ref, 1)))


def score_blocks(
    query: Tensor,
    ref: Tensor,
    memory_bytes: int,
    alpha: float = 1.0,
    bias: Tensor | None = None,
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(start, alpha * query[start:start + rows] @ ref.T + bias)`` block by block.

    Shapes: ``query (Q, D)``, ``ref (R, D)``, ``bias (R,)`` or None; each block is ``(rows, R)``
    with ``rows = chunk_rows(R, memory_bytes)``. Every block is written into one buffer allocated
    once (no fresh pages per block), so a block is overwritten by the next: consume it before
    advancing the iterator.
    """
    step = min(chunk_rows(ref.shape[0], memory_bytes), query.shape[0])
    buffer = torch.empty(step, ref.shape[0], dtype=query.dtype, device=query.device)
    for start in range(0, query.shape[0], step):
        block = query[start : start + step]
        out = buffer[: block.shape[0]]
        # beta = 0 without a bias: the (uninitialised) input is ignored, never read
        added, beta = (out, 0.0) if bias is None else (bias, 1.0)
        torch.addmm(added, block, ref.T, beta=beta, alpha=alpha, out=out)
        yield start, out


def prepare_embeddings(x: Tensor, similarity: str, device: torch.device) -> Tensor:
    """Float32 copy of ``x`` on ``device``, rows L2-normalised for ``cosine``
    (:func:`~dmlkit.core.similarity.unit_rows`: extreme norms rescaled, all-zero rows refused)."""
    x = x.detach().to(device=device, dtype=torch.float32)
    return unit_rows(x) if similarity == "cosine" else x


def stable_topk(s: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k per row of ``s (rows, R)``, best first, ties broken by lower column index (exact).

    One ``topk`` of k + 1 finds the rows where a tie crosses the cut; only those rows are sorted
    in full. Within the top k, equal scores are ordered by index. Scratch O(rows k), plus the
    size of the block when ties cross the cut.
    """
    extra = min(k + 1, s.shape[1])
    vals, idx = torch.topk(s, extra, dim=1)
    idx = idx[:, :k]
    if extra > k:
        # rare (duplicated embeddings at the cut): those rows are sorted in full, a quarter of
        # the block at a time (copy, values and int64 indices: 4x the block's bytes per row)
        crossing = torch.nonzero(vals[:, k - 1] == vals[:, k]).squeeze(1)
        for rows in crossing.split(max(1, s.shape[0] // 4)):
            order = torch.sort(s[rows], dim=1, descending=True, stable=True).indices
            idx[rows] = order[:, :k]
    idx = torch.sort(idx, dim=1).values
    vals = torch.gather(s, 1, idx)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return torch.gather(idx, 1, order), torch.gather(vals, 1, order)


def topk_blocks(
    query: Tensor,
    ref: Tensor | None,
    k: int,
    similarity: str = "cosine",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    device: torch.device | str | None = None,
) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
    """Exact top-``k`` block by block; yields ``(start, scores, index, values)``.

    ``scores (rows, R)``: the block's ranking scores (for ``euclidean`` without the row constant
    ``-|q|^2``), own rows at ``-inf`` when ``ref`` is None; it lives in a reused buffer, valid
    until the next block. ``index, values (rows, k)``: the block's top-k as :func:`knn` returns
    them, on ``device``. Inputs are assumed validated (see :func:`knn`).
    """
    dev = torch.device(device) if device is not None else query.device
    q_all = prepare_embeddings(query, similarity, dev)
    r_all = q_all if ref is None else prepare_embeddings(ref, similarity, dev)
    euclidean = similarity == "euclidean"
    alpha, bias = (2.0, -(r_all * r_all).sum(1)) if euclidean else (1.0, None)
    for start, s in score_blocks(q_all, r_all, memory_bytes, alpha, bias):
        rows = s.shape[0]
        if ref is None:
            own = torch.arange(rows, device=dev)
            s[own, own + start] = float("-inf")
        idx, val = stable_topk(s, k)
        if euclidean:
            q = q_all[start : start + rows]
            val = val - (q * q).sum(1, keepdim=True)
        yield start, s, idx, val


def knn(
    query: Tensor,
    ref: Tensor | None = None,
    k: int = 1,
    similarity: str = "cosine",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    device: torch.device | str | None = None,
    backend: str = "torch",
    *,
    metric: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Exact top-``k`` references of every query; see the module docstring.

    ``similarity``: one of :data:`SIMILARITIES` (``metric``: its deprecated former keyword).
    ``device``: where the products run (default: the device of ``query``); results come back on
    the CPU. ``backend``: ``"torch"`` (default) or ``"faiss"``.

    >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    >>> knn(q, None, k=1)[0].tolist()  # leave-one-out: 0 <-> 2, and 1's nearest other is 2
    [[2], [2], [0]]
    """
    similarity = similarity_argument(similarity, metric, "knn")
    check_knn_arguments(query, ref, k, similarity, backend)
    if backend == "faiss":
        return _faiss_knn(query, query if ref is None else ref, k, similarity, ref is None)
    out_idx, out_val = [], []
    for _, _, idx, val in topk_blocks(query, ref, k, similarity, memory_bytes, device):
        out_idx.append(idx.cpu())
        out_val.append(val.cpu())
    return torch.cat(out_idx), torch.cat(out_val)


def check_knn_arguments(
    query: Tensor, ref: Tensor | None, k: int, similarity: str, backend: str
) -> None:
    """Validate :func:`knn`'s inputs; ``ValueError``/``TypeError`` naming what came."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity: expected one of {SIMILARITIES}, got {similarity!r}")
    if backend not in ("torch", "faiss"):
        raise ValueError(f"backend: expected 'torch' or 'faiss', got {backend!r}")
    check_embeddings(query, "query")
    if ref is not None:
        check_embeddings(ref, "ref")
        if query.shape[1] != ref.shape[1]:
            raise ValueError(
                f"ref: expected embedding dim D={query.shape[1]} like query, got {ref.shape[1]}"
            )
    available = query.shape[0] - 1 if ref is None else ref.shape[0]
    if not 1 <= k <= available:
        raise ValueError(f"k: expected 1 <= k <= {available} (references available), got {k}")


def import_faiss() -> Any:
    """The ``faiss`` module, or an ``ImportError`` saying how to install it."""
    try:
        import faiss  # type: ignore[import-not-found, unused-ignore]
    except ImportError as err:
        raise ImportError(
            "the faiss kNN backends need faiss: pip install 'dmlkit[faiss]' (or faiss-cpu / "
            "faiss-gpu)"
        ) from err
    return faiss


def faiss_inputs(query: Tensor, ref: Tensor, similarity: str) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous float32 numpy copies of ``query (Q, D)`` and ``ref (R, D)`` (rows
    L2-normalised for ``cosine``, so inner products are cosines)."""
    cpu = torch.device("cpu")
    q = prepare_embeddings(query, similarity, cpu).contiguous().numpy()
    r = prepare_embeddings(ref, similarity, cpu).contiguous().numpy()
    return q, r


def faiss_search(
    index: Any, query: np.ndarray, k: int, similarity: str, exclude_self: bool
) -> tuple[Tensor, Tensor]:
    """Top-``k`` of ``query`` in the faiss ``index`` as :func:`knn` returns them: ``(indices
    (Q, k) int64, scores (Q, k) float32)``, scores negated for ``euclidean``. With
    ``exclude_self`` query ``i`` is reference ``i``: ``k + 1`` are searched and each row's own
    index dropped (or its last entry when a duplicate pushed the query out)."""
    scores, idx = index.search(query, k + int(exclude_self))
    idx_t, val_t = torch.from_numpy(idx).long(), torch.from_numpy(scores).float()
    if similarity == "euclidean":
        val_t = -val_t
    if exclude_self:
        return drop_own(idx_t, val_t, torch.arange(query.shape[0]))
    return idx_t, val_t


def drop_own(index: Tensor, values: Tensor, own: Tensor) -> tuple[Tensor, Tensor]:
    """Lists ``index, values (Q, k + 1)`` without each row's ``own (Q,)`` reference, or without
    its last entry when the row does not hold it (a duplicate pushed it out): ``(Q, k)``."""
    keep = index != own[:, None]
    keep[keep.all(1), -1] = False
    rows, k = index.shape[0], index.shape[1] - 1
    return index[keep].view(rows, k), values[keep].view(rows, k)


def _faiss_knn(
    query: Tensor, ref: Tensor, k: int, similarity: str, exclude_self: bool
) -> tuple[Tensor, Tensor]:
    faiss = import_faiss()
    q, r = faiss_inputs(query, ref, similarity)
    index = (
        faiss.IndexFlatL2(r.shape[1])
        if similarity == "euclidean"
        else faiss.IndexFlatIP(r.shape[1])
    )
    index.add(r)
    return faiss_search(index, q, k, similarity, exclude_self)
