"""Intra-pair variance (Yu & Tao 2019): each side's pair losses pulled towards their batch mean.

Per side, with ``μ = mean_{mask} l`` over the active pairs of the whole batch::

    V+ = mean_{P} [l+ - (1 - ε+) μ+]_+²       V- = mean_{N} [l- - (1 + ε-) μ-]_+²       L = V+ + V-

With ``l+ = -s`` and ``l- = s`` (:class:`~dmlkit.losses.terms.LinearTerm`) this is
``[(1 - ε+) mean_P s - s]_+²`` for positives and ``[s - (1 + ε-) mean_N s]_+²`` for negatives:
positives less similar than a fraction of the mean, and negatives more similar than a multiple of
it, are penalised. An empty side contributes 0. Memory: O(B R).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dmlkit.core.checks import check_positive
from dmlkit.losses.aggregators import PairAggregator
from dmlkit.losses.reductions import float_mask


def _side(losses: Tensor, mask: Tensor, factor: float) -> Tensor:
    weights = float_mask(mask, losses.dtype)
    count = weights.sum().clamp_min(1.0)
    centre = (losses * weights).sum() / count
    return (F.relu(losses - factor * centre).pow(2) * weights).sum() / count


class PairVarianceAggregator(PairAggregator):
    """``mean_P [l+ - (1 - ε+) μ+]_+² + mean_N [l- - (1 + ε-) μ-]_+²``, ``μ`` each side's mean;
    see the module docstring."""

    chunk_blocker = "each side is centred on the mean over all pairs of the batch"

    def __init__(self, pos_eps: float = 0.01, neg_eps: float = 0.01) -> None:
        super().__init__()
        self.pos_eps = check_positive(pos_eps, "pos_eps", allow_zero=True)
        self.neg_eps = check_positive(neg_eps, "neg_eps", allow_zero=True)

    def forward(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        return _side(l_pos, pos, 1.0 - self.pos_eps) + _side(l_neg, neg, 1.0 + self.neg_eps)

    def extra_repr(self) -> str:
        return f"pos_eps={self.pos_eps}, neg_eps={self.neg_eps}"
