"""Training strategies that keep state across steps (cross-batch memory, CCP rounds, sharing).

A method is selected in a config with ``method: {name, options}`` (see
:mod:`dmlkit.methods.registry`); its callbacks implement :class:`~dmlkit.methods.hooks.Callback`.
"""

from dmlkit.methods.hooks import BatchEnd, Callback, TrainerView
from dmlkit.methods.memory import CrossBatchMemory
from dmlkit.methods.registry import METHODS, TrainingMethod

__all__ = ["METHODS", "BatchEnd", "Callback", "CrossBatchMemory", "TrainerView", "TrainingMethod"]
