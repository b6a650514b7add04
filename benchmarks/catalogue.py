"""The loss catalogue's benchmark cases: each loss beside its pytorch-metric-learning peer.

A :class:`Case` builds both sides for ``classes`` classes and ``dim``-dimensional embeddings; each
side is a callable ``(emb (B, D), labels (B,)) -> scalar loss`` (a module with parameters, such as
proxies, is fine). The modules ``benchmarks/catalogue_*.py`` each define ``CASES: dict[str, Case]``
for one family; ``bench_loss_catalogue.py`` times every case with the pair-loss benchmark's steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Factory = Callable[[int, int], LossFn]


@dataclass(frozen=True)
class Case:
    """``ours(classes, dim)`` and ``peer(classes, dim)`` (None: no peer) at matching settings;
    ``note`` says what differs or why there is no peer."""

    ours: Factory
    peer: Factory | None
    note: str = ""
