"""``evaluate``: retrieval and clustering metrics of embeddings in one call.

    result = evaluate(query_emb, query_labels)                          # leave-one-out on one set
    result = evaluate(query_emb, query_labels, gallery_emb, gallery_labels)   # query / gallery
    result.to_dict()  # {"recall@1": ..., "precision@1": ..., "r_precision": ..., "map@r": ..., ...}

The references are ranked once, exactly and in memory-bounded blocks (:mod:`.ranking`): a top-K
list with K the largest list length a metric needs (R_max = the largest number of relevant
references for R-precision and MAP@R, max(ks) for Precision@k and MAP@k), and the exact rank of
each query's first relevant reference for Recall@k and MRR (any k, no K x N list). Relevance:
same class id, or at least one shared label for multi-hot labels ``(N, C)``.

A query with no relevant reference (R = 0: its class has no other item, or no gallery item) cannot
be scored: it is excluded from every mean and counted in ``num_excluded_queries`` (never a NaN).
``average="per_class"`` averages the per-class means instead of the per-query values. NMI, AMI and
F1 cluster the query embeddings with k-means (:mod:`.lloyd`) into as many clusters as there are
query classes. ``roc_auc``, ``eer``, ``tar_at_far`` and ``fnmr_at_fmr`` are the verification
metrics over all pairs (:mod:`.verification`): keys ``"roc_auc"``, ``"eer"``, and one
``"tar@far1e-3"`` / ``"fnmr@fmr1e-3"`` per rate of ``fmrs``.

Every metric's name, keys, list depth and function are one row of :mod:`.metric_table`.

``knn_backend="faiss_ivf"`` or ``"faiss_hnsw"`` ranks with approximate search instead
(:mod:`.approximate`, for collections too large for exact search on a CPU): the metrics then
come from approximate top-K lists, and the result carries, beside them, the recall of those lists
against exact search on a seeded sample of the scored queries, at the depth each metric reads:
``knn_recall@k`` for Recall@k, Precision@k and MAP@k (``knn_recall@1`` for P@1), ``knn_recall@R``
for R-Precision and MAP@R (each query at its own ``min(R, K)``), and ``knn_recall_queries``.

Semantics match pytorch-metric-learning's AccuracyCalculator (``precision_at_1``,
``r_precision``, ``mean_average_precision_at_r``, ``mean_reciprocal_rank`` with ``k=None``, NMI,
AMI) and the official DRO / Multi-Similarity Recall@K. Exact score ties are the one difference:
here the lower reference index always ranks first (lists and first ranks agree), while the
official Recall@K counts only strictly better items ahead of the best relevant one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dmlkit.core.checks import check_embeddings, check_labels
from dmlkit.evaluation import clustering, retrieval
from dmlkit.evaluation.approximate import (
    APPROXIMATE_BACKENDS,
    DEFAULT_SAMPLE_QUERIES,
    approximate_knn,
    check_options,
    exact_sample,
    neighbour_recall,
)
from dmlkit.evaluation.knn import (
    DEFAULT_MEMORY_BYTES,
    SIMILARITIES,
    chunk_rows,
    knn,
    similarity_argument,
)
from dmlkit.evaluation.lloyd import kmeans
from dmlkit.evaluation.metric_table import (
    DEFAULT_METRICS,
    FAMILIES,
    METRIC_NAMES,
    METRICS,
    Metric,
    RankedLists,
)
from dmlkit.evaluation.ranking import neighbour_relevance, rank_references
from dmlkit.evaluation.verification import DEFAULT_FMRS, pair_counts

STANDARD_KS: dict[str, tuple[int, ...]] = {
    "cub": (1, 2, 4, 8),
    "cars": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30, 40, 50),
}
KNN_BACKENDS: tuple[str, ...] = ("torch", "faiss", *APPROXIMATE_BACKENDS)


@dataclass
class EvalResult:
    """Metric values (float) plus the query counts they were computed on.

    ``num_queries``: queries scored by the retrieval metrics; ``num_excluded_queries``: queries
    left out because no reference is relevant to them. ``neighbour_recall``: with an approximate
    kNN backend, ``knn_recall@...`` and ``knn_recall_queries`` (module docstring); empty for
    exact search.
    """

    metrics: dict[str, float]
    num_queries: int
    num_excluded_queries: int
    ks: tuple[int, ...] = field(default_factory=tuple)
    neighbour_recall: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float]:
        """The metrics, the neighbour recall (approximate search only), ``"num_queries"`` and
        ``"num_excluded_queries"``, all as floats."""
        return {
            **self.metrics,
            **self.neighbour_recall,
            "num_queries": float(self.num_queries),
            "num_excluded_queries": float(self.num_excluded_queries),
        }


def _num_relevant(
    q_labels: Tensor, r_labels: Tensor, leave_one_out: bool, memory_bytes: int
) -> Tensor:
    """R_i ``(Q,)``: references relevant to each query (itself excluded when ref = query)."""
    if q_labels.ndim == 1:
        classes, inverse = torch.unique(torch.cat([q_labels, r_labels]), return_inverse=True)
        counts = torch.bincount(inverse[q_labels.shape[0] :], minlength=classes.shape[0])
        n = counts[inverse[: q_labels.shape[0]]]
    else:
        rf = r_labels.float()
        step = chunk_rows(r_labels.shape[0], memory_bytes)
        n = torch.cat([((q.float() @ rf.T) > 0).sum(1) for q in torch.split(q_labels, step)])
    return n - int(leave_one_out)


def _average(values: Tensor, groups: Tensor | None) -> float:
    """Mean of per-query ``values``; with ``groups`` the mean of the per-group means."""
    if groups is None:
        return float(values.mean())
    _, inverse = torch.unique(groups, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1, dtype=torch.float64).index_add_(0, inverse, values)
    return float((sums / torch.bincount(inverse).double()).mean())


def _check_inputs(
    query_emb: Tensor,
    query_labels: Tensor,
    ref_emb: Tensor | None,
    ref_labels: Tensor | None,
    wanted: tuple[str, ...],
    ks: tuple[int, ...],
    average: str,
    similarity: str,
    backends: tuple[str, str],
    knn_options: Mapping[str, Any],
    fmrs: tuple[float, ...],
) -> None:
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity: expected one of {SIMILARITIES}, got {similarity!r}")
    knn_backend, kmeans_backend = backends
    if knn_backend not in KNN_BACKENDS:
        raise ValueError(f"knn_backend: expected one of {KNN_BACKENDS}, got {knn_backend!r}")
    if kmeans_backend not in ("torch", "faiss"):
        raise ValueError(f"kmeans_backend: expected 'torch' or 'faiss', got {kmeans_backend!r}")
    if knn_backend in APPROXIMATE_BACKENDS:
        check_options(knn_backend, knn_options)
    elif knn_options:
        raise ValueError(
            f"knn_options: only the approximate backends {tuple(APPROXIMATE_BACKENDS)} take "
            f"options, got {dict(knn_options)} with knn_backend={knn_backend!r}"
        )
    unknown = sorted(set(wanted) - set(METRIC_NAMES))
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; expected names from {METRIC_NAMES}")
    if not wanted:
        raise ValueError("metrics: expected at least one metric name, got none")
    if average not in ("micro", "per_class"):
        raise ValueError(f"average: expected 'micro' or 'per_class', got {average!r}")
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks: expected one or more positive integers, got {ks}")
    if not fmrs or any(not 0.0 < f < 1.0 for f in fmrs):
        raise ValueError(f"fmrs: expected one or more rates in (0, 1), got {fmrs}")
    check_embeddings(query_emb, "query_emb")
    check_labels(query_labels, query_emb.shape[0], "query_labels")
    if ref_emb is None:
        if ref_labels is not None:
            raise ValueError("ref_labels: given without ref_emb; pass both or neither")
    else:
        check_embeddings(ref_emb, "ref_emb")
        if ref_emb.shape[1] != query_emb.shape[1]:
            raise ValueError(
                f"ref_emb: expected dim D={query_emb.shape[1]} like query_emb, "
                f"got {ref_emb.shape[1]}"
            )
        if ref_labels is None:
            raise ValueError("ref_labels: expected labels for ref_emb, got None")
        check_labels(ref_labels, ref_emb.shape[0], "ref_labels")
        if ref_labels.ndim != query_labels.ndim or (
            ref_labels.ndim == 2 and ref_labels.shape[1] != query_labels.shape[1]
        ):
            raise ValueError(
                f"ref_labels: expected the label form of query_labels {tuple(query_labels.shape)}"
                f" (ids or multi-hot with the same C), got {tuple(ref_labels.shape)}"
            )
    if query_labels.ndim != 1:
        if average == "per_class":
            raise ValueError("average='per_class' needs class ids (N,), got multi-hot labels")
        if any(METRICS[m].family == "clustering" for m in wanted):
            raise ValueError("nmi/ami/f1 need class ids (N,), got multi-hot labels")


def _retrieval_metrics(
    wanted: Sequence[Metric], ks: tuple[int, ...], lists: RankedLists, groups: Tensor | None
) -> dict[str, float]:
    """Average each requested metric's per-query values over the scored queries."""
    results: dict[str, float] = {}
    for row in wanted:
        if row.per == "k":
            for key, k in zip(row.keys(ks), ks, strict=True):
                results[key] = _average(row.function(lists, k), groups)
        else:
            results[row.name] = _average(row.function(lists, None), groups)
    return results


def _rank(
    query_emb: Tensor,
    q_labels: Tensor,
    ref_emb: Tensor | None,
    r_labels: Tensor,
    wanted: Sequence[Metric],
    ks: tuple[int, ...],
    r_max: int,
    similarity: str,
    memory_bytes: int,
    device: torch.device | str | None,
    backend: str,
    knn_options: Mapping[str, Any],
    seed: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Relevance of each query's top-K list ``(Q, K)``, its first-relevant rank ``(Q,)`` and
    the list itself ``(Q, K)``.

    K: R_max for R-precision and MAP@R, max(ks) for Precision@k and MAP@k (and for Recall@k with
    faiss, which gives no full ranking), at least 1.
    """
    available = r_labels.shape[0] - int(ref_emb is None)
    per_k = [m.name for m in wanted if m.per == "k"]
    if per_k and max(ks) > available:
        raise ValueError(f"ks: expected k <= {available} references for {per_k}, got {max(ks)}")
    list_len = 1
    for m in wanted:
        if m.depth == "all" and backend != "torch":
            raise ValueError(
                f"metrics: {m.name!r} needs the full ranking; knn_backend={backend!r} gives "
                "top-K lists"
            )
        if m.by_first_rank and backend == "torch":
            continue  # exact first ranks over all references, no list needed
        list_len = max(list_len, {"1": 1, "k": max(ks), "R": r_max}.get(m.depth or "1", 1))
    if backend != "torch":
        if backend == "faiss":
            index, _ = knn(query_emb, ref_emb, list_len, similarity, memory_bytes, device, "faiss")
        else:
            index, _ = approximate_knn(
                query_emb, ref_emb, list_len, similarity, backend, knn_options, seed
            )
        relevant = neighbour_relevance(q_labels, r_labels, index, memory_bytes)
        return relevant, retrieval.first_relevant_rank(relevant), index
    if any(m.by_first_rank for m in wanted):  # a short list resolves most first ranks
        list_len = max(list_len, min(available, 16))
    r_given = None if ref_emb is None else r_labels
    ranking = rank_references(
        query_emb, q_labels, ref_emb, r_given, list_len, similarity, memory_bytes, device
    )
    relevant = neighbour_relevance(q_labels, r_labels, ranking.index, memory_bytes)
    return relevant, ranking.first_rank, ranking.index


def neighbour_recall_depths(wanted: Sequence[str], ks: Sequence[int]) -> dict[str, int | None]:
    """The neighbour-recall keys of the ``wanted`` metrics with the list depth each reads
    (``None``: each query's R), in report order, plus ``knn_recall_queries`` (depth ``None``,
    not a recall). Recall@k, Precision@k, MAP@k -> ``knn_recall@k``; P@1 -> ``knn_recall@1``;
    R-Precision, MAP@R -> ``knn_recall@R``."""
    depths: dict[str, int | None] = {}
    for name in wanted:
        depth = METRICS[name].depth
        if depth == "k":
            depths.update({f"knn_recall@{k}": int(k) for k in ks})
        elif depth == "1":
            depths["knn_recall@1"] = 1
        elif depth == "R":
            depths["knn_recall@R"] = None
    return {**depths, "knn_recall_queries": None}


def _neighbour_recall(
    query_emb: Tensor,
    ref_emb: Tensor | None,
    index: Tensor,
    scored: Tensor,
    num_relevant: Tensor,
    wanted: Sequence[str],
    ks: tuple[int, ...],
    similarity: str,
    memory_bytes: int,
    sample_queries: int,
    seed: int,
) -> dict[str, float]:
    """The neighbour recall of the approximate lists ``index (Q, K)`` against exact search, on
    at most ``sample_queries`` of the ``scored (Q,)`` queries drawn with ``seed``, at the depth
    each wanted metric reads (:func:`neighbour_recall_depths`, at most K)."""
    candidates = torch.nonzero(scored).squeeze(1)
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(candidates.numel(), generator=generator)[:sample_queries]
    sample = candidates[pick].sort().values
    list_len = index.shape[1]
    exact = exact_sample(query_emb, ref_emb, list_len, similarity, sample, memory_bytes)
    out: dict[str, float] = {}
    for key, depth in neighbour_recall_depths(wanted, ks).items():
        if key == "knn_recall_queries":
            out[key] = float(sample.numel())
            continue
        per_query = (
            num_relevant[sample].clamp(1, list_len)
            if depth is None
            else torch.full((sample.numel(),), min(depth, list_len))
        )
        out[key] = neighbour_recall(index[sample], exact, per_query)
    return out


def evaluate(
    query_emb: Tensor,
    query_labels: Tensor,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    metrics: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    similarity: str = "cosine",
    average: str = "micro",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    device: torch.device | str | None = None,
    knn_backend: str = "torch",
    kmeans_backend: str = "torch",
    seed: int = 0,
    kmeans_restarts: int = 1,
    knn_options: Mapping[str, Any] | None = None,
    fmrs: Sequence[float] = DEFAULT_FMRS,
    *,
    metric: str | None = None,
) -> EvalResult:
    """Retrieval and clustering metrics of ``query_emb (Q, D)`` against ``ref_emb (R, D)``.

    ``ref_emb=None``: leave-one-out retrieval among the queries (each query's own row excluded by
    index). ``metrics``: names from :data:`METRIC_NAMES` (default :data:`DEFAULT_METRICS`; the
    table: :mod:`.metric_table`); ``"recall"``, ``"precision_at_k"`` and ``"map_at_k"`` give one
    value per k of ``ks``. ``similarity``: ``"cosine"``, ``"dot"`` or ``"euclidean"`` (``metric``:
    its deprecated former keyword). ``memory_bytes``: scratch bound of the
    ranking and k-means. ``device``: where the products run (default: that of ``query_emb``).
    ``knn_backend="faiss"`` ranks with faiss (top-K lists only, so no ``"mrr"``);
    ``"faiss_ivf"``/``"faiss_hnsw"`` with approximate search (``knn_options``: see
    :mod:`.approximate`), adding the neighbour recall to the result.
    ``seed``/``kmeans_restarts``: the k-means generator (and the approximate index's sampling)
    and the number of k-means restarts.
    ``fmrs``: the false match rates of ``"tar_at_far"`` and ``"fnmr_at_fmr"``.
    See the module docstring for the semantics.

    >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> evaluate(emb, labels, metrics=["recall", "map@r"], ks=(1,)).to_dict()
    {'recall@1': 1.0, 'map@r': 1.0, 'num_queries': 4.0, 'num_excluded_queries': 0.0}
    """
    similarity = similarity_argument(similarity, metric, "evaluate")
    wanted = tuple(DEFAULT_METRICS if metrics is None else metrics)
    ks = tuple(int(k) for k in ks)
    fmrs = tuple(float(f) for f in fmrs)
    _check_inputs(
        query_emb,
        query_labels,
        ref_emb,
        ref_labels,
        wanted,
        ks,
        average,
        similarity,
        (knn_backend, kmeans_backend),
        knn_options or {},
        fmrs,
    )
    leave_one_out = ref_emb is None
    q_labels = query_labels.cpu()
    r_labels = q_labels if ref_labels is None else ref_labels.cpu()
    num_relevant = _num_relevant(q_labels, r_labels, leave_one_out, memory_bytes)
    valid = num_relevant > 0
    results: dict[str, float] = {}
    recall: dict[str, float] = {}
    by_family = {f: [METRICS[m] for m in wanted if METRICS[m].family == f] for f in FAMILIES}
    retrieval_wanted = by_family["retrieval"]
    if retrieval_wanted:
        if not bool(valid.any()):
            raise ValueError(
                "query_labels: expected at least one query with a relevant reference, got none: "
                "no query has a relevant reference (every query class is missing from the "
                "references), so no retrieval metric can be computed"
            )
        relevant, first_rank, index = _rank(
            query_emb,
            q_labels,
            ref_emb,
            r_labels,
            retrieval_wanted,
            ks,
            int(num_relevant[valid].max()),
            similarity,
            memory_bytes,
            device,
            knn_backend,
            knn_options or {},
            seed,
        )
        groups = q_labels[valid] if average == "per_class" else None
        lists = RankedLists(relevant[valid], first_rank[valid], num_relevant[valid])
        results.update(_retrieval_metrics(retrieval_wanted, ks, lists, groups))
        if knn_backend in APPROXIMATE_BACKENDS:
            sample_queries = (knn_options or {}).get("sample_queries", DEFAULT_SAMPLE_QUERIES)
            recall = _neighbour_recall(
                query_emb,
                ref_emb,
                index,
                valid,
                num_relevant,
                [m.name for m in retrieval_wanted],
                ks,
                similarity,
                memory_bytes,
                sample_queries,
                seed,
            )
    if by_family["clustering"]:
        k = int(torch.unique(q_labels).numel())
        points = clustering.embedding_kmeans_input(query_emb, similarity)
        if device is not None:
            points = points.to(device)
        assign = kmeans(
            points, k, seed, kmeans_restarts, memory_bytes=memory_bytes, backend=kmeans_backend
        )
        for m in by_family["clustering"]:
            results[m.name] = m.function(q_labels, assign)
    if by_family["verification"]:
        counts = pair_counts(
            query_emb, q_labels, ref_emb, ref_labels, similarity, memory_bytes, device
        )
        for m in by_family["verification"]:
            rates = fmrs if m.per == "rate" else (None,)
            results.update(
                {key: m.function(counts, f) for key, f in zip(m.keys(ks, fmrs), rates, strict=True)}
            )
    return EvalResult(results, int(valid.sum()), int((~valid).sum()), ks, recall)
