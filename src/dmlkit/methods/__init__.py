"""Training strategies that keep state across steps (cross-batch memory, CCP rounds, sharing).

A method is selected in a config with ``method: {name, options}`` (see
:mod:`dmlkit.methods.registry`); its callbacks implement :class:`~dmlkit.methods.hooks.Callback`.
"""

from dmlkit.methods.ccp import CCPMethod, CCPRounds
from dmlkit.methods.ccp_loss import CCPLoss
from dmlkit.methods.hooks import BatchEnd, Callback, TrainerView
from dmlkit.methods.kcenter import greedy_k_center
from dmlkit.methods.memory import CrossBatchMemory
from dmlkit.methods.proximal import ProximalTerm
from dmlkit.methods.registry import METHODS, TrainingMethod

__all__ = [
    "METHODS",
    "BatchEnd",
    "CCPLoss",
    "CCPMethod",
    "CCPRounds",
    "Callback",
    "CrossBatchMemory",
    "ProximalTerm",
    "TrainerView",
    "TrainingMethod",
    "greedy_k_center",
]
