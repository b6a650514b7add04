"""Evaluation: exact chunked kNN and ranking (approximate faiss search on request, with its
neighbour recall), retrieval, clustering and verification metrics (one table of them:
:mod:`dmlkit.evaluation.metric_table`), the evaluator."""

from dmlkit.evaluation.approximate import APPROXIMATE_BACKENDS, approximate_knn
from dmlkit.evaluation.clustering import ami, clustering_f1, nmi
from dmlkit.evaluation.evaluator import (
    KNN_BACKENDS,
    STANDARD_KS,
    EvalResult,
    evaluate,
    neighbour_recall_depths,
)
from dmlkit.evaluation.extract import extract_embeddings
from dmlkit.evaluation.heads import combine_heads, head_embeddings, split_heads
from dmlkit.evaluation.knn import knn
from dmlkit.evaluation.lloyd import kmeans
from dmlkit.evaluation.metric_table import DEFAULT_METRICS, METRIC_NAMES
from dmlkit.evaluation.ranking import Ranking, rank_references
from dmlkit.evaluation.retrieval import (
    first_relevant_rank,
    map_at_k,
    map_at_r,
    mrr,
    precision_at_k,
    r_precision,
    recall_at_k,
)

__all__ = [
    "APPROXIMATE_BACKENDS",
    "DEFAULT_METRICS",
    "KNN_BACKENDS",
    "METRIC_NAMES",
    "STANDARD_KS",
    "EvalResult",
    "Ranking",
    "ami",
    "approximate_knn",
    "clustering_f1",
    "combine_heads",
    "evaluate",
    "extract_embeddings",
    "first_relevant_rank",
    "head_embeddings",
    "kmeans",
    "knn",
    "map_at_k",
    "map_at_r",
    "mrr",
    "neighbour_recall_depths",
    "nmi",
    "precision_at_k",
    "r_precision",
    "rank_references",
    "recall_at_k",
    "split_heads",
]
