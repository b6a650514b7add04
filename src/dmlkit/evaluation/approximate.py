"""Approximate k-nearest neighbours (faiss IVF or HNSW) and the recall of the neighbours found.

For collections beyond what exact search does in minutes on a CPU. The evaluator uses it only
when asked (``knn_backend="faiss_ivf"`` or ``"faiss_hnsw"``) and then reports, beside the
metrics, the recall of the neighbour lists against exact search on a sample of queries
(:func:`neighbour_recall`), so an approximate result is never silent.

``approximate_knn(query (Q, D), ref (R, D) | None, k)`` returns ``(indices (Q, k) int64,
scores (Q, k) float32)`` as :func:`~dmlkit.evaluation.knn.knn` does (``ref=None``: leave-one-out,
own row dropped by index; cosine rows L2-normalised, inner-product search; euclidean scores are
negated squared distances). Backends and ``options``:

- ``"faiss_ivf"`` (``IndexIVFFlat``): the references are split into ``nlist`` cells by k-means
  (default ``round(4 sqrt(R))``, at most ``R / 39``), trained on at most ``64 nlist`` references
  drawn with ``seed``; a query scans its ``nprobe`` nearest cells (default ``ceil(nlist / 16)``).
  Cost: training O(64 nlist^2 D) per k-means iteration, search O(Q (nlist + nprobe R / nlist) D).
- ``"faiss_hnsw"`` (``IndexHNSWFlat``): a navigable small-world graph with ``m`` links per node
  (default 32), built with ``ef_construction`` (default 80) and searched with ``ef_search``
  candidates (default ``max(128, 2 k)``). Cost: build O(R log R m D), search O(Q ef log R D).
- both: ``sample_queries`` (default 1000): how many queries :func:`neighbour_recall` checks.

Memory: the references once more as float32 (plus the graph, ``R m`` int32 links, for HNSW).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from dmlkit.evaluation.knn import (
    DEFAULT_MEMORY_BYTES,
    drop_own,
    faiss_inputs,
    faiss_search,
    import_faiss,
    knn,
    similarity_argument,
)

APPROXIMATE_BACKENDS: dict[str, tuple[str, ...]] = {
    "faiss_ivf": ("nlist", "nprobe", "sample_queries"),
    "faiss_hnsw": ("m", "ef_construction", "ef_search", "sample_queries"),
}
DEFAULT_SAMPLE_QUERIES = 1000


def check_options(backend: str, options: Mapping[str, Any]) -> None:
    """``ValueError`` for an unknown backend, an option it does not take, or a value that is not
    a positive int."""
    if backend not in APPROXIMATE_BACKENDS:
        raise ValueError(
            f"knn_backend: expected one of {tuple(APPROXIMATE_BACKENDS)} for approximate search, "
            f"got {backend!r}"
        )
    accepted = APPROXIMATE_BACKENDS[backend]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"knn_options: unknown option(s) {unknown} for {backend!r}; accepted: "
            f"{', '.join(accepted)}"
        )
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"knn_options.{name}: expected a positive int, got {value!r}")


def _ivf_index(faiss: Any, ref: Any, similarity: str, options: Mapping[str, Any], seed: int) -> Any:
    num, dim = ref.shape
    nlist = options.get("nlist", max(1, min(num // 39, round(4 * math.sqrt(num)))))
    if nlist > num:
        raise ValueError(f"knn_options.nlist: expected at most {num} (references), got {nlist}")
    faiss_metric = faiss.METRIC_L2 if similarity == "euclidean" else faiss.METRIC_INNER_PRODUCT
    quantizer = faiss.IndexFlatL2(dim) if similarity == "euclidean" else faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss_metric)
    index.cp.seed = seed
    generator = torch.Generator().manual_seed(seed)
    train = torch.randperm(num, generator=generator)[: 64 * nlist].sort().values.numpy()
    index.train(ref[train])
    index.add(ref)
    index.nprobe = min(nlist, options.get("nprobe", math.ceil(nlist / 16)))
    return index


def _hnsw_index(faiss: Any, ref: Any, similarity: str, options: Mapping[str, Any], k: int) -> Any:
    faiss_metric = faiss.METRIC_L2 if similarity == "euclidean" else faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexHNSWFlat(ref.shape[1], options.get("m", 32), faiss_metric)
    index.hnsw.efConstruction = options.get("ef_construction", 80)
    index.add(ref)
    index.hnsw.efSearch = options.get("ef_search", max(128, 2 * k))
    return index


def approximate_knn(
    query: Tensor,
    ref: Tensor | None,
    k: int,
    similarity: str = "cosine",
    backend: str = "faiss_hnsw",
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    *,
    metric: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Approximate top-``k`` references of every query (module docstring) under ``similarity``
    (``metric``: its deprecated former keyword); inputs as :func:`~dmlkit.evaluation.knn.knn`
    takes them (validated by the caller)."""
    similarity = similarity_argument(similarity, metric, "approximate_knn")
    options = dict(options or {})
    check_options(backend, options)
    faiss = import_faiss()
    q, r = faiss_inputs(query, query if ref is None else ref, similarity)
    if backend == "faiss_ivf":
        index = _ivf_index(faiss, r, similarity, options, seed)
    else:
        index = _hnsw_index(faiss, r, similarity, options, k + int(ref is None))
    return faiss_search(index, q, k, similarity, exclude_self=ref is None)


def exact_sample(
    query: Tensor,
    ref: Tensor | None,
    k: int,
    similarity: str,
    sample: Tensor,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> Tensor:
    """Exact top-``k`` indices ``(S, k)`` of the queries ``sample (S,)`` among all references
    (leave-one-out when ``ref`` is None: each sampled query's own row excluded by index)."""
    if ref is not None:
        return knn(query[sample], ref, k, similarity, memory_bytes)[0]
    idx, val = knn(query[sample], query, k + 1, similarity, memory_bytes)
    return drop_own(idx, val, sample)[0]


def neighbour_recall(approx: Tensor, exact: Tensor, depth: Tensor) -> float:
    """Mean over queries of ``|approx_i[:d_i] ∩ exact_i[:d_i]| / d_i``.

    ``approx, exact (S, K)`` neighbour indices of the same queries, ``depth (S,)`` int64 in
    ``1..K`` (the list length a metric reads for each query). Memory O(S K^2) in blocks.
    """
    if approx.shape != exact.shape or depth.shape != approx.shape[:1]:
        raise ValueError(
            f"neighbour_recall: expected approx and exact (S, K) and depth (S,), got "
            f"{tuple(approx.shape)}, {tuple(exact.shape)}, {tuple(depth.shape)}"
        )
    cols = torch.arange(approx.shape[1])
    within = cols[None, :] < depth[:, None]  # (S, K): positions inside each query's depth
    hits = torch.zeros(approx.shape[0])
    for rows in torch.arange(approx.shape[0]).split(max(1, 2**22 // max(1, approx.shape[1] ** 2))):
        a, e = approx[rows], exact[rows]
        same = (a[:, :, None] == e[:, None, :]) & within[rows][:, None, :]
        hits[rows] = (same.any(2) & within[rows]).sum(1).float()
    return float((hits / depth.float()).mean())
