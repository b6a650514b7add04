"""Tensor contracts: similarity matrices, label relations, input checks, registries."""

from dmlkit.core.checks import check_embeddings, check_labels, check_positive, check_same_dim
from dmlkit.core.distance_weighting import distance_weighted_probs, inverse_sphere_log_weights
from dmlkit.core.lipschitz import lipschitz_normalize
from dmlkit.core.registry import BuildContext, Registry
from dmlkit.core.relations import RelationFn, relation_masks
from dmlkit.core.similarity import SIMILARITIES, Similarity, similarity_matrix

__all__ = [
    "SIMILARITIES",
    "BuildContext",
    "Registry",
    "RelationFn",
    "Similarity",
    "check_embeddings",
    "check_labels",
    "check_positive",
    "check_same_dim",
    "distance_weighted_probs",
    "inverse_sphere_log_weights",
    "lipschitz_normalize",
    "relation_masks",
    "similarity_matrix",
]
