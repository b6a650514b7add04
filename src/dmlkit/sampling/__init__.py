"""Batch samplers (m-per-class, DDP-aware) and in-batch triplet samplers.

The distance-weighted triplet sampler is defined in :mod:`dmlkit.losses.triplet_sampling` (the
margin loss uses it by default and ``losses`` may not import ``sampling``) and re-exported here.
"""

from dmlkit.losses.triplet_sampling import DistanceWeightedSampler, TripletSampler
from dmlkit.sampling.batch import MPerClassBatchSampler, classes_below

__all__ = ["DistanceWeightedSampler", "MPerClassBatchSampler", "TripletSampler", "classes_below"]
