"""Training strategies that keep state across steps (cross-batch memory, CCP rounds, sharing).

A method is selected in a config with ``method: {name, options}`` (see
:mod:`dmlkit.methods.registry`); its callbacks implement :class:`~dmlkit.methods.hooks.Callback`.
"""

from dmlkit.methods.ccp import CCPMethod, CCPRounds
from dmlkit.methods.ccp_loss import CCPLoss
from dmlkit.methods.decorrelation import Decorrelation
from dmlkit.methods.gradient_reversal import GradientReversal, grad_reverse
from dmlkit.methods.hooks import BatchEnd, Callback, TrainerView
from dmlkit.methods.kcenter import greedy_k_center
from dmlkit.methods.memory import CrossBatchMemory
from dmlkit.methods.proximal import ProximalTerm
from dmlkit.methods.registry import METHODS, TrainingMethod
from dmlkit.methods.shared_task import SharedTripletLoss, SharingLoss
from dmlkit.methods.sharing import Sharing

__all__ = [
    "METHODS",
    "BatchEnd",
    "CCPLoss",
    "CCPMethod",
    "CCPRounds",
    "Callback",
    "CrossBatchMemory",
    "Decorrelation",
    "GradientReversal",
    "ProximalTerm",
    "SharedTripletLoss",
    "Sharing",
    "SharingLoss",
    "TrainerView",
    "TrainingMethod",
    "grad_reverse",
    "greedy_k_center",
]
