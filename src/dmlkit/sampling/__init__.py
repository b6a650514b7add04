"""Batch samplers (m-per-class, shuffled; DDP-aware) and in-batch triplet samplers.

The distance-weighted triplet sampler is defined in :mod:`dmlkit.losses.triplet_sampling` (the
margin loss uses it by default and ``losses`` may not import ``sampling``) and re-exported here;
the shared-triplet samplers of "Sharing Matters" are in :mod:`dmlkit.sampling.shared_triplets`.
"""

from dmlkit.losses.triplet_sampling import DistanceWeightedSampler, TripletSampler
from dmlkit.sampling.batch import MPerClassBatchSampler, classes_below
from dmlkit.sampling.shared_triplets import (
    SHARED_SAMPLERS,
    SharedNegSampler,
    SharedRandomSampler,
    SurrogateSampler,
    create_shared_sampler,
    triplet_pair_masks,
)
from dmlkit.sampling.shuffled import ShuffledBatchSampler

__all__ = [
    "SHARED_SAMPLERS",
    "DistanceWeightedSampler",
    "MPerClassBatchSampler",
    "SharedNegSampler",
    "SharedRandomSampler",
    "ShuffledBatchSampler",
    "SurrogateSampler",
    "TripletSampler",
    "classes_below",
    "create_shared_sampler",
    "triplet_pair_masks",
]
