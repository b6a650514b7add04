"""``evaluate``: retrieval and clustering metrics of embeddings in one call.

    result = evaluate(query_emb, query_labels)                          # leave-one-out on one set
    result = evaluate(query_emb, query_labels, gallery_emb, gallery_labels)   # query / gallery
    result.to_dict()  # {"recall@1": ..., "precision@1": ..., "r_precision": ..., "map@r": ..., ...}

The kNN is computed once (k = the largest K asked for, or the largest R for R-precision and
MAP@R), exactly and in memory-bounded chunks; every retrieval metric is read off the neighbour
labels. Relevance: same class id, or at least one shared label for multi-hot labels ``(N, C)``.
A query whose class has no other reference (R = 0) cannot be scored: it is excluded from every
mean and counted in ``num_excluded_queries`` (never a NaN). ``average="per_class"`` averages the
per-class means instead of the per-query values. NMI, AMI and F1 cluster the query embeddings with
k-means into as many clusters as there are query classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dmlkit.core.checks import check_embeddings, check_labels
from dmlkit.evaluation import clustering, retrieval
from dmlkit.evaluation.knn import DEFAULT_MEMORY_BYTES, chunk_rows, knn

STANDARD_KS: dict[str, tuple[int, ...]] = {
    "cub": (1, 2, 4, 8),
    "cars": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30, 40, 50),
}
METRIC_NAMES: tuple[str, ...] = (
    "recall",
    "precision@1",
    "precision_at_k",
    "r_precision",
    "map@r",
    "map_at_k",
    "mrr",
    "nmi",
    "ami",
    "f1",
)
DEFAULT_METRICS: tuple[str, ...] = ("recall", "precision@1", "r_precision", "map@r", "nmi")
_CLUSTERING = ("nmi", "ami", "f1")


@dataclass
class EvalResult:
    """Metric values (float) plus the query counts they were computed on."""

    metrics: dict[str, float]
    num_queries: int
    num_excluded_queries: int
    ks: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, float]:
        return {
            **self.metrics,
            "num_queries": float(self.num_queries),
            "num_excluded_queries": float(self.num_excluded_queries),
        }


def _num_relevant(
    q_labels: Tensor, r_labels: Tensor, leave_one_out: bool, memory_bytes: int
) -> Tensor:
    """R_i: references relevant to each query (itself excluded when ref = query)."""
    if q_labels.ndim == 1:
        classes, inverse = torch.unique(torch.cat([q_labels, r_labels]), return_inverse=True)
        counts = torch.bincount(inverse[q_labels.shape[0] :], minlength=classes.shape[0])
        n = counts[inverse[: q_labels.shape[0]]]
    else:
        rf = r_labels.float()
        step = chunk_rows(r_labels.shape[0], memory_bytes)
        n = torch.cat([((q.float() @ rf.T) > 0).sum(1) for q in torch.split(q_labels, step)])
    return n - int(leave_one_out)


def _relevance(q_labels: Tensor, neighbour_labels: Tensor) -> Tensor:
    if q_labels.ndim == 1:
        return neighbour_labels == q_labels[:, None]
    return (neighbour_labels.bool() & q_labels.bool()[:, None, :]).any(-1)


def _average(values: Tensor, labels: Tensor | None) -> float:
    if labels is None:
        return float(values.mean())
    _, inverse = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1, dtype=torch.float64).index_add_(0, inverse, values)
    counts = torch.bincount(inverse).double()
    return float((sums / counts).mean())


def evaluate(
    query_emb: Tensor,
    query_labels: Tensor,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    metrics: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    metric: str = "cosine",
    average: str = "micro",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    device: torch.device | str | None = None,
    knn_backend: str = "torch",
    kmeans_backend: str = "torch",
    seed: int = 0,
    kmeans_restarts: int = 1,
) -> EvalResult:
    """Retrieval and clustering metrics; see the module docstring. ``ref_emb=None`` means
    leave-one-out retrieval among the queries."""
    wanted = tuple(DEFAULT_METRICS if metrics is None else metrics)
    unknown = sorted(set(wanted) - set(METRIC_NAMES))
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; expected names from {METRIC_NAMES}")
    if average not in ("micro", "per_class"):
        raise ValueError(f"average: expected 'micro' or 'per_class', got {average!r}")
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"ks: expected positive integers, got {ks}")
    check_embeddings(query_emb, "query_emb")
    check_labels(query_labels, query_emb.shape[0], "query_labels")
    leave_one_out = ref_emb is None
    if leave_one_out:
        if ref_labels is not None:
            raise ValueError("ref_labels: given without ref_emb; pass both or neither")
        r_labels = query_labels
    else:
        check_embeddings(ref_emb, "ref_emb")
        if ref_labels is None:
            raise ValueError("ref_labels: expected labels for ref_emb, got None")
        check_labels(ref_labels, ref_emb.shape[0], "ref_labels")
        if ref_labels.ndim != query_labels.ndim:
            raise ValueError(
                "ref_labels: expected the same label form (ids or multi-hot) as queries"
            )
        r_labels = ref_labels
    if average == "per_class" and query_labels.ndim != 1:
        raise ValueError("average='per_class' needs class ids (N,), got multi-hot labels")
    q_labels, r_labels = query_labels.cpu(), r_labels.cpu()

    num_relevant = _num_relevant(q_labels, r_labels, leave_one_out, memory_bytes)
    valid = num_relevant > 0
    results: dict[str, float] = {}
    retrieval_wanted = [m for m in wanted if m not in _CLUSTERING]
    if retrieval_wanted:
        if not bool(valid.any()):
            raise ValueError(
                "query_labels: no query has a relevant reference (every class has a single item), "
                "so no retrieval metric can be computed"
            )
        available = r_labels.shape[0] - int(leave_one_out)
        needs_r = any(m in ("r_precision", "map@r") for m in wanted)
        k_needed = (
            max([*ks, 1])
            if any(m in ("recall", "precision_at_k", "map_at_k") for m in wanted)
            else 1
        )
        if needs_r:
            k_needed = max(k_needed, int(num_relevant[valid].max()))
        if k_needed > available:
            raise ValueError(f"ks: expected K <= {available} references, got {k_needed}")
        if leave_one_out:
            index, _ = knn(query_emb, None, k_needed, metric, memory_bytes, device, knn_backend)
            index = index[valid]
        else:
            q_emb = query_emb[valid.to(query_emb.device)]
            index, _ = knn(q_emb, ref_emb, k_needed, metric, memory_bytes, device, knn_backend)
        rel = _relevance(q_labels[valid], r_labels[index])
        n_rel = num_relevant[valid]
        group = q_labels[valid] if average == "per_class" else None
        per_k = {
            "recall": ("recall@{}", lambda k: retrieval.recall_at_k(rel, k)),
            "precision_at_k": ("precision@{}", lambda k: retrieval.precision_at_k(rel, k)),
            "map_at_k": ("map@{}", lambda k: retrieval.map_at_k(rel, n_rel, k)),
        }
        single = {
            "precision@1": lambda: retrieval.precision_at_k(rel, 1),
            "r_precision": lambda: retrieval.r_precision(rel, n_rel),
            "map@r": lambda: retrieval.map_at_r(rel, n_rel),
            "mrr": lambda: retrieval.mrr(rel),
        }
        for name in retrieval_wanted:
            if name in per_k:
                key, fn = per_k[name]
                for k in ks:
                    results[key.format(k)] = _average(fn(k), group)
            else:
                results[name] = _average(single[name](), group)
    clustering_wanted = [m for m in wanted if m in _CLUSTERING]
    if clustering_wanted:
        if q_labels.ndim != 1:
            raise ValueError("nmi/ami/f1 need class ids (N,), got multi-hot labels")
        k = int(torch.unique(q_labels).numel())
        points = clustering.embedding_kmeans_input(query_emb, metric)
        assign = clustering.kmeans(
            points, k, seed, kmeans_restarts, memory_bytes=memory_bytes, backend=kmeans_backend
        )
        scorers = {"nmi": clustering.nmi, "ami": clustering.ami, "f1": clustering.clustering_f1}
        for name in clustering_wanted:
            results[name] = scorers[name](q_labels, assign)
    return EvalResult(results, int(valid.sum()), int((~valid).sum()), ks)
