"""The metric table: every metric :func:`~dmlkit.evaluation.evaluate` computes, in one place.

Each row names a metric (the name a config lists in ``eval.metrics``), its family, whether it
gives one value per k of ``ks`` or per false match rate of ``fmrs``, the format of its keys in
results, logs and ``metrics.json``, the depth of the ranked list it reads and its function::

    name            family        per    key             depth   function
    recall          retrieval     k      recall@{k}      k       1[first_rank < k]
    precision@1     retrieval     -      precision@1     1       rel_i0
    precision_at_k  retrieval     k      precision@{k}   k       (1/k) sum_{j<k} rel_ij
    r_precision     retrieval     -      r_precision     R       (1/R) sum_{j<R} rel_ij
    map@r           retrieval     -      map@r           R       MAP@R (Musgrave 2020)
    map_at_k        retrieval     k      map@{k}         k       MAP@k
    mrr             retrieval     -      mrr             all     1 / (first_rank + 1)
    nmi, ami, f1    clustering    -      the name        -       of k-means clusters
    roc_auc, eer    verification  -      the name        -       over all pairs
    tar_at_far      verification  rate   tar@far{f}      -       TAR at FMR <= f
    fnmr_at_fmr     verification  rate   fnmr@fmr{f}     -       1 - TAR at FMR <= f

Functions take, by family: ``(lists: RankedLists, k) -> (Q,)`` per-query values (``k`` is
``None`` for a metric without ``per``; :mod:`.retrieval`), ``(labels (N,), clusters (N,)) ->
float`` (:mod:`.clustering`) and ``(counts: PairCounts, rate) -> float`` (``rate`` ``None``
likewise; :mod:`.verification`). ``depth``: how deep into each query's ranked list the metric
reads (``"1"``: its first entry, ``"k"``: ``max(ks)``, ``"R"``: the query's number of relevant
references, ``"all"``: the full ranking, which only exact torch search gives); with approximate search it is also the depth
of the metric's neighbour recall (``knn_recall@k``, ``knn_recall@R``). Recall@k and MRR read the
rank of the first relevant reference (``by_first_rank``), which exact torch search finds over all
references without a list.

Rate keys write powers of ten as ``1e-3`` and other rates as ``%g``
(:func:`~dmlkit.evaluation.verification.rate_name`). Every result also carries the query counts
``COUNTS``. The similarity the references are ranked by is one of :data:`SIMILARITIES`.

Adding a metric: one row here (its function in the module of its family); the evaluator, the
training columns (:func:`dmlkit.training.evaluate.metric_columns`) and the config check read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from dmlkit.evaluation import clustering, retrieval
from dmlkit.evaluation.knn import SIMILARITIES
from dmlkit.evaluation.verification import (
    DEFAULT_FMRS,
    PairCounts,
    equal_error_rate,
    rate_name,
    roc_auc,
    tar_at_far,
)

FAMILIES = ("retrieval", "clustering", "verification")
COUNTS = ("num_queries", "num_excluded_queries")

__all__ = [
    "COUNTS",
    "DEFAULT_METRICS",
    "METRICS",
    "METRIC_NAMES",
    "SIMILARITIES",
    "Metric",
    "RankedLists",
    "metric_keys",
]


@dataclass(frozen=True)
class RankedLists:
    """What the retrieval metrics read, for the scored queries (R > 0):
    ``relevant (Q, K)`` bool along each query's ranked list, ``first_rank (Q,)`` int64 (0-based
    rank of the first relevant reference in the full ranking) and ``num_relevant (Q,)``, R."""

    relevant: Tensor
    first_rank: Tensor
    num_relevant: Tensor

    def up_to_r(self) -> Tensor:
        """``relevant[:, :R_max]``, the columns the R-based metrics read."""
        return self.relevant[:, : int(self.num_relevant.max())]


@dataclass(frozen=True)
class Metric:
    """One row of the table (module docstring)."""

    name: str
    family: str
    function: Callable[..., Any]
    per: str | None = None
    key: str = ""
    depth: str | None = None
    by_first_rank: bool = False

    def keys(self, ks: Sequence[int], fmrs: Sequence[float] = DEFAULT_FMRS) -> list[str]:
        """The keys the metric reports: one per k (``recall@1``), one per false match rate
        (``tar@far1e-3``), or its name."""
        if self.per == "k":
            return [self.key.format(int(k)) for k in ks]
        if self.per == "rate":
            return [self.key.format(rate_name(f)) for f in fmrs]
        return [self.name]


def _recall(lists: RankedLists, k: int) -> Tensor:
    return retrieval.recall_at_k(lists.first_rank, k)


def _precision_at_1(lists: RankedLists, k: None) -> Tensor:
    return retrieval.precision_at_k(lists.relevant[:, :1], 1)


def _precision(lists: RankedLists, k: int) -> Tensor:
    return retrieval.precision_at_k(lists.relevant[:, :k], k)


def _r_precision(lists: RankedLists, k: None) -> Tensor:
    return retrieval.r_precision(lists.up_to_r(), lists.num_relevant)


def _map_at_r(lists: RankedLists, k: None) -> Tensor:
    return retrieval.map_at_r(lists.up_to_r(), lists.num_relevant)


def _map_at_k(lists: RankedLists, k: int) -> Tensor:
    return retrieval.map_at_k(lists.relevant[:, :k], lists.num_relevant, k)


def _mrr(lists: RankedLists, k: None) -> Tensor:
    return retrieval.mrr(lists.first_rank)


def _roc_auc(counts: PairCounts, rate: None) -> float:
    return roc_auc(counts)


def _eer(counts: PairCounts, rate: None) -> float:
    return equal_error_rate(counts)


def _tar(counts: PairCounts, rate: float) -> float:
    return tar_at_far(counts, rate)[0]


def _fnmr(counts: PairCounts, rate: float) -> float:
    return 1.0 - tar_at_far(counts, rate)[0]


_ROWS = (
    Metric("recall", "retrieval", _recall, "k", "recall@{}", "k", by_first_rank=True),
    Metric("precision@1", "retrieval", _precision_at_1, depth="1"),
    Metric("precision_at_k", "retrieval", _precision, "k", "precision@{}", "k"),
    Metric("r_precision", "retrieval", _r_precision, depth="R"),
    Metric("map@r", "retrieval", _map_at_r, depth="R"),
    Metric("map_at_k", "retrieval", _map_at_k, "k", "map@{}", "k"),
    Metric("mrr", "retrieval", _mrr, depth="all", by_first_rank=True),
    Metric("nmi", "clustering", clustering.nmi),
    Metric("ami", "clustering", clustering.ami),
    Metric("f1", "clustering", clustering.clustering_f1),
    Metric("roc_auc", "verification", _roc_auc),
    Metric("eer", "verification", _eer),
    Metric("tar_at_far", "verification", _tar, "rate", "tar@far{}"),
    Metric("fnmr_at_fmr", "verification", _fnmr, "rate", "fnmr@fmr{}"),
)
METRICS: dict[str, Metric] = {row.name: row for row in _ROWS}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
DEFAULT_METRICS: tuple[str, ...] = ("recall", "precision@1", "r_precision", "map@r", "nmi")


def metric_keys(name: str, ks: Sequence[int], fmrs: Sequence[float] = DEFAULT_FMRS) -> list[str]:
    """The keys metric ``name`` reports (:meth:`Metric.keys`); ``ValueError`` for an unknown
    name."""
    if name not in METRICS:
        raise ValueError(f"metrics: unknown {name!r}; expected names from {METRIC_NAMES}")
    return METRICS[name].keys(ks, fmrs)
