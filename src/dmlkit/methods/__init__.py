"""Training strategies that keep state across steps (cross-batch memory, CCP rounds, sharing)."""

from dmlkit.methods.memory import CrossBatchMemory

__all__ = ["CrossBatchMemory"]
