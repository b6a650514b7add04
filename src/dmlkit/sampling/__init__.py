"""Batch samplers (m-per-class, DDP-aware) and in-batch triplet samplers."""

from dmlkit.sampling.batch import MPerClassBatchSampler, classes_below

__all__ = ["MPerClassBatchSampler", "classes_below"]
