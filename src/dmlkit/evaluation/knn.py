"""Exact k-nearest neighbours, chunked over queries under a memory bound.

``knn(query (Q, D), ref (R, D) | None, k)`` returns ``(indices (Q, k) int64, scores (Q, k) float32)``
sorted best first. ``ref=None`` searches the queries among themselves and removes each query's own
row *by index*, so duplicates of a query elsewhere stay retrievable. Scores are similarities
(``cosine``, ``dot``) or negated squared distances (``euclidean``). Ties are broken by the lower
reference index, so results are deterministic across chunk sizes and devices.

Memory: the scratch of one chunk is ``chunk x R`` float32 scores (plus their top-k), chosen so it
stays under ``memory_bytes`` (default 1 GiB); time O(Q R D). ``backend="faiss"`` uses an exact flat
faiss index instead (``pip install dmlkit[faiss]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dmlkit.core.checks import check_embeddings, check_same_dim

METRICS: tuple[str, ...] = ("cosine", "dot", "euclidean")
DEFAULT_MEMORY_BYTES = 1 << 30


def chunk_rows(num_ref: int, memory_bytes: int) -> int:
    """Queries per chunk so that two ``chunk x num_ref`` float32 buffers fit in ``memory_bytes``."""
    return max(1, int(memory_bytes) // (8 * max(num_ref, 1)))


def _prepare(x: Tensor, metric: str, device: torch.device) -> Tensor:
    x = x.to(device=device, dtype=torch.float32)
    return F.normalize(x, dim=1) if metric == "cosine" else x


def _scores(q: Tensor, r: Tensor, r_sq: Tensor | None) -> Tensor:
    s = q @ r.T
    if r_sq is not None:  # -|q - r|^2 up to the per-row constant |q|^2 (same ranking)
        s.mul_(2.0).sub_(r_sq[None, :])
    return s


def _stable_topk(s: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k per row, best first, ties broken by lower column index (exact, deterministic).

    One ``topk`` of k + 1 finds the rows where a tie crosses the cut; only those rows are sorted
    in full. Within the top k, equal scores are ordered by index.
    """
    extra = min(k + 1, s.shape[1])
    vals, idx = torch.topk(s, extra, dim=1)
    crossing = (
        vals[:, k - 1] == vals[:, k]
        if extra > k
        else torch.zeros_like(vals[:, 0], dtype=torch.bool)
    )
    idx = idx[:, :k]
    if bool(crossing.any()):  # rare: duplicated embeddings at the cut
        rows = torch.nonzero(crossing).squeeze(1)
        idx[rows] = torch.sort(s[rows], dim=1, descending=True, stable=True).indices[:, :k]
    idx = torch.sort(idx, dim=1).values
    vals = torch.gather(s, 1, idx)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return torch.gather(idx, 1, order), torch.gather(vals, 1, order)


def knn(
    query: Tensor,
    ref: Tensor | None = None,
    k: int = 1,
    metric: str = "cosine",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    device: torch.device | str | None = None,
    backend: str = "torch",
) -> tuple[Tensor, Tensor]:
    """Exact top-``k`` references of every query; see the module docstring."""
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
    check_embeddings(query, "query")
    exclude_self = ref is None
    if ref is not None:
        check_embeddings(ref, "ref")
        check_same_dim(query, ref)
    num_ref = query.shape[0] if ref is None else ref.shape[0]
    available = num_ref - int(exclude_self)
    if not 1 <= k <= available:
        raise ValueError(f"k: expected 1 <= k <= {available} (references available), got {k}")
    if backend == "faiss":
        return _faiss_knn(query, query if ref is None else ref, k, metric, exclude_self)
    if backend != "torch":
        raise ValueError(f"backend: expected 'torch' or 'faiss', got {backend!r}")
    dev = torch.device(device) if device is not None else query.device
    q_all = _prepare(query, metric, dev)
    r_all = q_all if ref is None else _prepare(ref, metric, dev)
    r_sq = (r_all * r_all).sum(1) if metric == "euclidean" else None
    step = chunk_rows(num_ref, memory_bytes)
    out_idx, out_val = [], []
    for start in range(0, q_all.shape[0], step):
        q = q_all[start : start + step]
        s = _scores(q, r_all, r_sq)
        if exclude_self:
            rows = torch.arange(q.shape[0], device=dev)
            s[rows, rows + start] = float("-inf")
        idx, val = _stable_topk(s, k)
        if r_sq is not None:
            val = val - (q * q).sum(1, keepdim=True)  # back to -|q - r|^2
        out_idx.append(idx.cpu())
        out_val.append(val.cpu())
    return torch.cat(out_idx), torch.cat(out_val)


def _faiss_knn(
    query: Tensor, ref: Tensor, k: int, metric: str, exclude_self: bool
) -> tuple[Tensor, Tensor]:
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='faiss' needs faiss: pip install 'dmlkit[faiss]' (or faiss-cpu / faiss-gpu)"
        ) from err
    q = _prepare(query, metric, torch.device("cpu")).contiguous().numpy()
    r = _prepare(ref, metric, torch.device("cpu")).contiguous().numpy()
    index = (
        faiss.IndexFlatL2(r.shape[1]) if metric == "euclidean" else faiss.IndexFlatIP(r.shape[1])
    )
    index.add(r)
    extra = int(exclude_self)
    scores, idx = index.search(q, k + extra)
    idx_t, val_t = torch.from_numpy(idx).long(), torch.from_numpy(scores).float()
    if metric == "euclidean":
        val_t = -val_t
    if exclude_self:
        own = torch.arange(q.shape[0])[:, None]
        keep = idx_t != own
        # drop each row's own index (or its last entry when the query itself was not returned)
        keep[keep.all(1), -1] = False
        idx_t = idx_t[keep].view(q.shape[0], k)
        val_t = val_t[keep].view(q.shape[0], k)
    return idx_t, val_t
