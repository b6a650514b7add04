"""Clustering metrics (NMI, AMI, pairwise F1) of cluster assignments against class labels.

The assignments come from :func:`dmlkit.evaluation.lloyd.kmeans` on the embeddings.

- NMI: ``I(Y; C) / ((H(Y) + H(C)) / 2)`` (scikit-learn's, arithmetic normalisation).
- AMI: ``(I - E[I]) / ((H(Y) + H(C)) / 2 - E[I])``, corrected for chance (scikit-learn's).
- F1: the pairwise clustering F-measure of DML papers. Over all unordered pairs of items,
  precision = co-clustered pairs that share a class / co-clustered pairs, recall = same-class
  pairs that are co-clustered / same-class pairs; computed from the non-empty cells of the
  class x cluster table, without an N x N matrix (memory O(N)).

>>> import torch
>>> clustering_f1(torch.tensor([0, 0, 1, 1]), torch.tensor([5, 5, 7, 7]))
1.0
"""

from __future__ import annotations

import numpy as np
import torch  # noqa: F401  (the docstring examples use it)
import torch.nn.functional as F
from torch import Tensor

# scikit-learn is imported where NMI/AMI are computed: its import costs about a second, which
# every command that merely lists or parses would pay otherwise.


def nmi(labels: Tensor, clusters: Tensor) -> float:
    """Normalised mutual information ``I(Y; C) / ((H(Y) + H(C)) / 2)`` between classes and clusters.

    >>> nmi(torch.tensor([0, 0, 1, 1]), torch.tensor([1, 1, 0, 0]))
    1.0
    """
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(labels.cpu().numpy(), clusters.cpu().numpy()))


def ami(labels: Tensor, clusters: Tensor) -> float:
    """Adjusted mutual information ``(I - E[I]) / (mean(H(Y), H(C)) - E[I])``, chance-corrected.

    >>> ami(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1]))
    1.0
    """
    from sklearn.metrics import adjusted_mutual_info_score

    return float(adjusted_mutual_info_score(labels.cpu().numpy(), clusters.cpu().numpy()))


def _pairs(counts: np.ndarray) -> float:
    """``Σ n (n - 1) / 2``: unordered pairs inside groups of sizes ``counts``."""
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1.0) / 2.0).sum())


def clustering_f1(labels: Tensor, clusters: Tensor) -> float:
    """Pairwise F1 of a clustering against the classes (0 when no pair is co-clustered).

    ``TP = Σ_cells C(n_yc, 2)``, ``P = TP / Σ_c C(n_c, 2)``, ``R = TP / Σ_y C(n_y, 2)``,
    ``F1 = 2PR / (P + R)``, from the non-empty cells of the class x cluster table (memory O(N)).

    >>> clustering_f1(torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 0, 1, 1, 1]))
    0.5
    """
    if labels.shape != clusters.shape or labels.ndim != 1:
        raise ValueError(
            f"labels, clusters: expected two (N,) tensors, got {tuple(labels.shape)} and "
            f"{tuple(clusters.shape)}"
        )
    _, y = np.unique(labels.cpu().numpy(), return_inverse=True)
    _, c = np.unique(clusters.cpu().numpy(), return_inverse=True)
    _, cells = np.unique(y.astype(np.int64) * (int(c.max()) + 1) + c, return_counts=True)
    true_pos = _pairs(cells)
    if true_pos == 0:
        return 0.0
    precision = true_pos / _pairs(np.bincount(c))
    recall = true_pos / _pairs(np.bincount(y))
    return 2 * precision * recall / (precision + recall)


def embedding_kmeans_input(emb: Tensor, similarity: str) -> Tensor:
    """Rows as k-means sees them: L2-normalised for cosine (spherical geometry)."""
    return F.normalize(emb.float(), dim=1) if similarity == "cosine" else emb.float()
