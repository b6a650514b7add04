"""Dynamic soft margin loss (Zhang & Rusinkiewicz, ICCV 2019, "Learning Local Descriptors with a
CDF-Based Dynamic Soft Margin"; PML's ``DynamicSoftMarginLoss``).

For every triplet ``(a, p, n)`` (``p`` a positive and ``n`` a negative of anchor ``a``) with
Euclidean distances between unit vectors ``d = sqrt(2 - 2 s)``, let ``x = d_ap - d_an``. A running
histogram ``h`` of ``x`` (``num_bins`` nodes ``t_k = min_val + k δ``, ``δ = 2 |min_val| /
num_bins``, linear interpolation between nodes) is updated with the batch,

    h <- (1 - m) h + m h_batch        (h_batch normalised; m = 1 on the first batch),

and each triplet is weighted by the CDF of its bin, a constant (no gradient):

    L = mean_{(a,p,n)} w(x_apn) x_apn,      w(x) = Σ_{k <= floor((x - min_val)/δ)} h_k.

Triplets the model already gets right (low ``x``) get a low weight: a soft margin that adapts to
the distribution of ``x``. The mean is rewritten as ``(Σ_ap W+_ap d_ap - Σ_an W-_an d_an) / T``
with the weight sums ``W+_ap = Σ_n w``, ``W-_an = Σ_p w`` (no gradient), so the graph holds
only ``(B, R)`` tensors; the weights are computed over the triplets in chunks
(:func:`~dmlkit.losses.chunks.triplet_chunks`), memory O(B R + chunk), time O(B R + T) for ``T``
triplets. Shapes: ``emb (B, D)``, ``labels (B,)``, optional ``ref_emb
(R, D)`` and ``ref_labels (R,)`` (positives and negatives are then taken from the reference).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.core.checks import check_positive
from dmlkit.core.relations import RelationFn
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.chunks import triplet_chunks
from dmlkit.losses.registry import LOSSES


class DynamicSoftMarginLoss(BatchLoss):
    """Dynamic soft margin loss (module docstring); the histogram is a buffer (saved with the
    state dict, updated in every forward call, also in eval mode).

    Defaults as PML: ``min_val=-2`` (the smallest ``x`` for unit vectors), ``num_bins=10``,
    ``momentum=0.01``. Differences from PML, which follow the official code: the batch histogram
    is normalised before it is mixed in (PML mixes the raw counts into its normalised histogram,
    which makes the effective momentum about 1 for any batch of many triplets), and the weights are
    constants (PML also differentiates through its histogram, which keeps the previous step's
    graph alive, so its second ``backward`` in a training loop raises). A bin index past the histogram
    (``x >= min_val + (num_bins - 1) δ``, where PML indexes out of range) is clamped to the last
    node. With ``momentum=1`` (or on the first batch) the values are PML's. The official code also
    has a label-free mode on hardest in-batch negatives, which is not offered here.
    """

    hist: Tensor

    def __init__(
        self,
        min_val: float = -2.0,
        num_bins: int = 10,
        momentum: float = 0.01,
        relation_fn: RelationFn | None = None,
    ) -> None:
        super().__init__("cosine", relation_fn)
        if not float(min_val) < 0.0:
            raise ValueError(f"min_val: expected a value < 0, got {min_val!r}")
        if int(num_bins) != num_bins or num_bins < 2:
            raise ValueError(f"num_bins: expected an integer >= 2, got {num_bins!r}")
        self.momentum = check_positive(momentum, "momentum")
        if self.momentum > 1.0:
            raise ValueError(f"momentum: expected a value in (0, 1], got {momentum!r}")
        self.min_val, self.num_bins = float(min_val), int(num_bins)
        self.width = 2.0 * abs(self.min_val) / self.num_bins
        self.register_buffer("hist", torch.zeros(self.num_bins, dtype=torch.float64))

    def _position(self, x: Tensor) -> Tensor:
        """``(x - min_val) / δ`` clamped to the histogram's nodes ``[0, num_bins - 1]``."""
        return ((x - self.min_val) / self.width).clamp_(0.0, self.num_bins - 1)

    def from_similarity(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The loss from cosine similarities ``S (B, R)`` and label masks ``(B, R)``."""
        dist = (2.0 - 2.0 * sim).clamp_min(1e-12).sqrt()
        w_pos, w_neg, total = self._weight_sums(dist.detach(), pos, neg)
        if total == 0:
            return sim.sum() * 0.0
        return ((w_pos - w_neg) * dist).sum() / total

    @torch.no_grad()
    def _weight_sums(self, d: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor, int]:
        """Update the histogram with the batch's triplets; return ``W+ (B, R)``, ``W- (B, R)`` and
        the number of triplets ``T`` (histogram unchanged when ``T = 0``). Two passes over the
        anchor chunks: the histogram, then the weights."""
        flat = d.reshape(-1)
        counts, total = torch.zeros_like(self.hist), 0
        for ap, an in triplet_chunks(pos, neg):
            t = self._position(flat.index_select(0, ap) - flat.index_select(0, an))
            t = t.to(counts.dtype)
            low = t.floor().clamp_(max=self.num_bins - 2)
            counts.index_add_(0, low.long(), 1.0 - (t - low))
            counts.index_add_(0, low.long() + 1, t - low)
            total += t.numel()
        w_pos, w_neg = torch.zeros_like(d), torch.zeros_like(d)
        if total == 0:
            return w_pos, w_neg, 0
        m = self.momentum if bool(self.hist.sum() != 0) else 1.0
        self.hist.mul_(1.0 - m).add_(counts / total, alpha=m).div_(self.hist.sum())
        cdf = self.hist.cumsum(0).to(d.dtype)
        for ap, an in triplet_chunks(pos, neg):
            x = flat.index_select(0, ap) - flat.index_select(0, an)
            w = cdf.index_select(0, self._position(x).floor_().long())
            w_pos.view(-1).index_add_(0, ap, w)
            w_neg.view(-1).index_add_(0, an, w)
        return w_pos, w_neg, total

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, num_bins={self.num_bins}, momentum={self.momentum}"


@LOSSES.register(
    "dynamic_soft_margin", family="triplet", source="Zhang & Rusinkiewicz 2019, CDF-based DSM"
)
def dynamic_soft_margin(
    min_val: float = -2.0,
    num_bins: int = 10,
    momentum: float = 0.01,
    relation_fn: RelationFn | None = None,
) -> DynamicSoftMarginLoss:
    """Dynamic soft margin loss: triplets ``d_ap - d_an`` weighted by the CDF of a running
    histogram (:class:`DynamicSoftMarginLoss`); defaults as PML's."""
    return DynamicSoftMarginLoss(min_val, num_bins, momentum, relation_fn)
