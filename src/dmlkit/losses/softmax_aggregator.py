"""Per-anchor softmax over the reference: the aggregator of SupCon, NCA and the instance loss.

The term supplies logits through its pair losses: a positive's logit is ``z = -l+``, a negative's
``z = l-`` (with :class:`~dmlkit.losses.terms.LinearTerm` of scale ``c``: ``z = c s`` for both).
Per anchor ``i``, over its active pairs ``A_i = P_i ∪ N_i``::

    positives="mean":       L_i = LSE_{A_i} z - mean_{P_i} z      (SupCon: mean log-probability)
    positives="logsumexp":  L_i = LSE_{A_i} z - LSE_{P_i} z       (NCA: log of the summed probability)

An anchor is valid when it has a positive; the anchors are then reduced by ``reduction``
(:func:`~dmlkit.losses.reductions.reduce_anchors`). Memory: O(B R).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.losses.aggregators import PairAggregator
from dmlkit.losses.reductions import (
    ANCHOR_REDUCTIONS,
    anchor_finish,
    anchor_partial,
    masked_logsumexp,
    masked_mean,
)

POSITIVE_POOLS: tuple[str, ...] = ("mean", "logsumexp")


class AnchorSoftmaxAggregator(PairAggregator):
    """``L_i = LSE_{P_i ∪ N_i} z - pool_{P_i} z`` with ``pool`` the mean (SupCon) or the
    log-sum-exp (NCA) of the positives' logits; see the module docstring."""

    chunk_blocker = None

    def __init__(self, positives: str = "mean", reduction: str = "mean_valid") -> None:
        super().__init__()
        if positives not in POSITIVE_POOLS:
            raise ValueError(f"positives: expected one of {POSITIVE_POOLS}, got {positives!r}")
        if reduction not in ANCHOR_REDUCTIONS:
            raise ValueError(f"reduction: expected one of {ANCHOR_REDUCTIONS}, got {reduction!r}")
        self.positives = positives
        self.reduction = reduction

    def partial(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, ...]:
        logits = torch.where(pos, -l_pos, l_neg)
        lse_all, _ = masked_logsumexp(logits, pos | neg)
        if self.positives == "mean":
            pooled, valid = masked_mean(l_pos, pos)  # -mean_P z
            per_anchor = lse_all + pooled
        else:
            lse_pos, valid = masked_logsumexp(-l_pos, pos)
            per_anchor = lse_all - lse_pos
        return anchor_partial(per_anchor, valid, self.reduction)

    def finish(self, stats: tuple[Tensor, ...], rows: int) -> Tensor:
        return anchor_finish(stats[0], stats[1], rows, self.reduction)

    def extra_repr(self) -> str:
        return f"positives={self.positives!r}, reduction={self.reduction!r}"
