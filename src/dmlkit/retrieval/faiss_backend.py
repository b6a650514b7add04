"""The optional faiss indexes of :class:`~dmlkit.retrieval.index.EmbeddingIndex` (``pip install
dmlkit[faiss]``): ``flat`` (exact), ``ivf`` (inverted lists over a k-means coarse quantizer, approximate)
and ``hnsw`` (a graph, approximate).

Vectors are stored as the index's search form: unit rows for ``cosine``, so inner product is the
cosine; ``dot`` uses inner product, ``euclidean`` squared L2 (scores negated, so higher is closer,
as in :func:`dmlkit.evaluation.knn`). Row ``i`` of the faiss index is row ``i`` of the
EmbeddingIndex: removing rows empties the faiss index (``reset``, which keeps an IVF's trained
quantizer) and adds the kept rows again. A faiss index is stored as its serialized bytes
(``faiss.serialize_index``) in a uint8 tensor, never pickled.

Parameters: ``nlist`` inverted lists (default ``round(4 sqrt(N))`` at the first add, at most N; the
coarse k-means trains on at most 64 evenly spaced rows per list of that add) and ``nprobe`` lists
searched (default ``max(1, nlist // 8)``); HNSW ``hnsw_m`` links per node (32),
``ef_search`` (64) and faiss's default ``efConstruction`` (40). Memory: the vectors (N D float32)
plus the structure (HNSW about 2 M int32 links a node).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

FAISS_KINDS = ("flat", "ivf", "hnsw")
TRAIN_PER_LIST = (
    64  # IVF k-means training rows per inverted list (every step-th row of the first add)
)


def import_faiss() -> Any:
    """The faiss module; ``ImportError`` saying how to install it."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "the flat, ivf and hnsw index backends need faiss: pip install 'dmlkit[faiss]' "
            "(or faiss-cpu / faiss-gpu); the default backend 'exact' needs nothing more"
        ) from err
    return faiss


def _measure(metric: str) -> Any:
    faiss = import_faiss()
    return faiss.METRIC_L2 if metric == "euclidean" else faiss.METRIC_INNER_PRODUCT


def new_index(kind: str, dim: int, metric: str, options: dict[str, Any], first: Tensor) -> Any:
    """An empty faiss index of ``kind``, an IVF trained on ``first (N, D)`` (the first rows)."""
    faiss = import_faiss()
    measure = _measure(metric)
    if kind == "flat":
        return faiss.IndexFlat(dim, measure)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(options.get("hnsw_m", 32)), measure)
        index.hnsw.efSearch = int(options.get("ef_search", 64))
        return index
    if kind == "ivf":
        n = first.shape[0]
        nlist = int(options.get("nlist") or min(n, max(1, round(4 * math.sqrt(n)))))
        if not 1 <= nlist <= n:
            raise ValueError(
                f"nlist: expected 1 <= nlist <= {n} (the vectors that train the ivf index), "
                f"got {nlist}"
            )
        index = faiss.index_factory(dim, f"IVF{nlist},Flat", measure)  # owns its quantizer
        step = max(1, n // (TRAIN_PER_LIST * nlist))  # an evenly spaced training sample
        index.train(np.ascontiguousarray(first[::step].numpy()))
        index.nprobe = int(options.get("nprobe") or max(1, nlist // 8))
        return index
    raise ValueError(f"backend: expected one of {FAISS_KINDS}, got {kind!r}")


def add(index: Any, vectors: Tensor) -> None:
    """Append rows ``(n, D)`` float32 to ``index``."""
    if vectors.shape[0]:
        index.add(np.ascontiguousarray(vectors.numpy()))


def rebuild(index: Any, vectors: Tensor) -> None:
    """Empty ``index`` (keeping an IVF's training) and add ``vectors`` again."""
    index.reset()
    add(index, vectors)


def search(index: Any, queries: Tensor, k: int, metric: str) -> tuple[Tensor, Tensor]:
    """``(rows (Q, k) int64, scores (Q, k) float32)``, best first; an approximate index may
    return fewer than ``k`` hits for a query (row -1, score -inf)."""
    scores, rows = index.search(np.ascontiguousarray(queries.numpy()), k)
    rows_t = torch.from_numpy(rows).long()
    scores_t = torch.from_numpy(scores).float()
    if metric == "euclidean":
        scores_t = -scores_t
    return rows_t, scores_t.masked_fill(rows_t < 0, float("-inf"))


def to_bytes(index: Any) -> Tensor:
    """The serialized index as a uint8 tensor."""
    faiss = import_faiss()
    return torch.from_numpy(np.array(faiss.serialize_index(index), dtype=np.uint8))


def from_bytes(data: Tensor, options: dict[str, Any]) -> Any:
    """The index serialized in ``data`` (uint8), with its search parameters set again."""
    faiss = import_faiss()
    index = faiss.deserialize_index(data.numpy())
    if hasattr(index, "nprobe") and options.get("nprobe"):
        index.nprobe = int(options["nprobe"])
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = int(options.get("ef_search", 64))
    return index


def search_options(index: Any) -> dict[str, Any]:
    """The parameters to restore after loading (``nprobe`` of an IVF)."""
    return {"nprobe": int(index.nprobe)} if hasattr(index, "nprobe") else {}
