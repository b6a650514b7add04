"""Angular loss (Wang et al. 2017): a triplet loss on the angle at the negative.

For every positive pair (a, p) with unit embeddings ``x`` and every negative n of anchor a, with
``t = tan² α``::

    f_apn = 4 t (x_a + x_p)ᵀ x_n - 2 (1 + t) x_aᵀ x_p
    L_ap  = log(1 + Σ_{n ∈ N_a} e^{f_apn})

and ``L = mean over positive pairs of L_ap`` (a pair whose anchor has no negative contributes 0
and still counts, as in pytorch-metric-learning's ``AngularLoss``). ``x_p`` and ``x_n`` are
reference rows (the batch itself by default). Memory: O(|P| R) for the |P| positive pairs (no
B x R x R tensor); time O(|P| R D).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmlkit.core.relations import RelationFn, relation_masks
from dmlkit.core.similarity import unit_rows
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.inputs import LossInputs, resolve_reference
from dmlkit.losses.reductions import masked_logsumexp
from dmlkit.losses.registry import LOSSES


class AngularLoss(BatchLoss):
    """``forward(emb (B, D), labels, ref_emb (R, D) = None, ref_labels = None, self_index = None)``;
    the mean over positive pairs of ``log(1 + Σ_{N_a} e^{4 t (x_a + x_p)ᵀ x_n - 2 (1 + t) x_aᵀ x_p})``
    on L2-normalised rows, ``t = tan² α`` with ``alpha`` in degrees (0 < α < 90). Computed in
    float32 (float64 for float64 input), also under autocast."""

    def __init__(self, alpha: float = 40.0, relation_fn: RelationFn | None = None) -> None:
        super().__init__("cosine", relation_fn)
        if not 0.0 < float(alpha) < 90.0:
            raise ValueError(f"alpha: expected an angle in degrees in (0, 90), got {alpha!r}")
        self.alpha = float(alpha)

    def compute(self, inputs: LossInputs) -> Tensor:
        emb = inputs.emb
        labels, ref, ref_labels, self_index = resolve_reference(inputs)
        pos, neg = relation_masks(labels, ref_labels, self.relation_fn, self_index)
        dtype = torch.float64 if emb.dtype == torch.float64 else torch.float32
        tan_sq = math.tan(math.radians(self.alpha)) ** 2
        with torch.autocast(device_type=emb.device.type, enabled=False):
            x = unit_rows(emb.to(dtype), "emb")
            r = x if ref is emb else unit_rows(ref.to(dtype), "ref_emb")
            anchor, positive = torch.nonzero(pos, as_tuple=True)
            xa, xp = x[anchor], r[positive]
            logits = (4.0 * tan_sq) * ((xa + xp) @ r.T)
            logits = logits - (2.0 * (1.0 + tan_sq)) * (xa * xp).sum(dim=1, keepdim=True)
            per_pair, _ = masked_logsumexp(logits, neg[anchor], add_one=True)
            loss = per_pair.sum() / max(anchor.numel(), 1)
        if not loss.requires_grad and (x.requires_grad or r.requires_grad):
            loss = loss + 0.0 * (x.sum() + r.sum())
        return loss

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


@LOSSES.register("angular", family="triplet", source="Wang et al. 2017, angular loss")
def angular(alpha: float = 40.0, relation_fn: RelationFn | None = None) -> AngularLoss:
    """Angular loss (Wang et al. 2017), PML's ``AngularLoss`` form: for each positive pair (a, p),
    ``log(1 + Σ_{n ∈ N_a} e^{4 tan²α (x_a + x_p)ᵀ x_n - 2 (1 + tan²α) x_aᵀ x_p})`` on unit
    embeddings, averaged over positive pairs; ``alpha`` in degrees, default 40 (PML's default;
    the paper reports 36-55). All three rows are L2-normalised, as in the paper; PML normalises
    the anchor and the positive but multiplies by the raw reference rows, so the two agree on
    unit-norm embeddings. Memory O(|P| R).
    """
    return AngularLoss(alpha, relation_fn)
