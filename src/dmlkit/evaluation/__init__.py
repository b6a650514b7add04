"""Evaluation: exact chunked kNN, retrieval and clustering metrics, the evaluator."""

from dmlkit.evaluation.clustering import ami, clustering_f1, kmeans, nmi
from dmlkit.evaluation.evaluator import (
    DEFAULT_METRICS,
    METRIC_NAMES,
    STANDARD_KS,
    EvalResult,
    evaluate,
)
from dmlkit.evaluation.extract import extract_embeddings
from dmlkit.evaluation.knn import knn
from dmlkit.evaluation.retrieval import (
    map_at_k,
    map_at_r,
    mrr,
    precision_at_k,
    r_precision,
    recall_at_k,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_NAMES",
    "STANDARD_KS",
    "EvalResult",
    "ami",
    "clustering_f1",
    "evaluate",
    "extract_embeddings",
    "kmeans",
    "knn",
    "map_at_k",
    "map_at_r",
    "mrr",
    "nmi",
    "precision_at_k",
    "r_precision",
    "recall_at_k",
]
