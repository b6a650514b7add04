"""The numbers behind the retrieval grid and the embedding map.

Retrieval: ``num_queries`` test items drawn without replacement with ``seed``; each one's top-k
neighbours among all other test items by the run's similarity (cosine unless the config says
otherwise), exactly as the evaluation ranks them (:func:`dmlkit.evaluation.knn`, ties to the lower
index); a neighbour is correct when its label equals the query's. Time O(Q N D), memory O(Q N).

Map: at most ``max_points`` items drawn with ``seed``; PCA to 50 dimensions when ``D > 50``, then
2-D t-SNE (scikit-learn, PCA initialisation, perplexity ``min(30, (M - 1) / 3)``, 500
iterations: the 250 of early exaggeration and 250 more, enough for a map of <= 2,000 points).
t-SNE runs on one thread, so the map depends on the seed only (not on the machine's thread
count) and does not stall on a busy machine; time about O(M log M) per iteration, some seconds
for 2,000 points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dmlkit.evaluation import knn

MIN_MAP_POINTS = 4


@dataclass
class Retrieval:
    """``queries (Q,)`` rows of the embedding matrix; ``neighbours (Q, k)`` rows, best first;
    ``scores (Q, k)`` their similarities; ``correct (Q, k)`` same label as the query."""

    queries: np.ndarray
    neighbours: np.ndarray
    scores: np.ndarray
    correct: np.ndarray


def retrieve(
    emb: np.ndarray,
    labels: np.ndarray,
    num_queries: int,
    top_k: int,
    seed: int,
    similarity: str = "cosine",
) -> Retrieval:
    """Queries and their top-``top_k`` neighbours (module docstring); needs ``N > top_k``."""
    n = len(emb)
    if not 1 <= top_k < n or not 1 <= num_queries <= n:
        raise ValueError(
            f"retrieval: expected 1 <= top_k < N and 1 <= num_queries <= N with N = {n}, got "
            f"top_k={top_k}, num_queries={num_queries}"
        )
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n, size=num_queries, replace=False))
    x = torch.from_numpy(emb)
    idx, val = knn(x[torch.from_numpy(queries)], x, k=top_k + 1, similarity=similarity)
    neighbours = np.empty((num_queries, top_k), dtype=np.int64)
    scores = np.empty((num_queries, top_k), dtype=np.float32)
    for row, query in enumerate(queries):
        keep = (idx[row] != int(query)).nonzero().flatten()[:top_k]
        neighbours[row] = idx[row, keep].numpy()
        scores[row] = val[row, keep].numpy()
    correct = labels[neighbours] == labels[queries][:, None]
    return Retrieval(queries, neighbours, scores, correct)


def project_2d(emb: np.ndarray, seed: int, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """``(points (M, 2), rows (M,))``: the t-SNE map of a subsample (module docstring)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(emb)
    if n < MIN_MAP_POINTS:
        raise ValueError(f"embedding map: expected at least {MIN_MAP_POINTS} embeddings, got {n}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, max_points), replace=False))
    x = emb[rows].astype(np.float64)
    if x.shape[1] > 50:
        x = PCA(n_components=min(50, len(x)), random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(x) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", max_iter=500, random_state=seed)
    with threadpool_limits(limits=1):
        return tsne.fit_transform(x), rows
