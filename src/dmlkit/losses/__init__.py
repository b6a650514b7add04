"""Losses: the pair engine (terms x miners x aggregators), triplet family, proxy family, presets.

Every loss is an ``nn.Module`` with ``forward(emb, labels, ref_emb=None, ref_labels=None)``
returning a 0-dim tensor connected to the graph. Build any of them by name with :func:`create`.
"""

from dmlkit.losses.registry import LOSSES, create

__all__ = ["LOSSES", "create"]
