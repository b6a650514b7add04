"""The pair engine: every pair-based loss as ``similarity x relations x miner x term x aggregator``.

    S      = similarity(emb, ref)              (B, R) float32, also under autocast
    P, N   = relations(labels, ref_labels)     bool (B, R); self excluded when ref is the batch
    P, N   = miner(S.detach(), P, N)           which pairs count
    l+, l- = term(S)                           per-pair losses, elementwise
    L      = aggregator(l+, l-, P, N)          how they combine; dL/dl is each pair's weight

Memory: O(B R) (a handful of (B, R) temporaries); time O(B R D) for the similarity plus O(B R)
(O(B R log R) for the sorting miners).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.core.relations import RelationFn
from dmlkit.core.similarity import Similarity
from dmlkit.losses.aggregators import PairAggregator
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.miners import AllPairsMiner, PairMiner
from dmlkit.losses.terms import PairTerm


class PairLoss(BatchLoss):
    """A pair loss composed of a ``term``, an ``aggregator``, an optional ``miner`` and a
    ``similarity`` (name or :class:`~dmlkit.core.similarity.Similarity`).

    ``forward(emb (B, D), labels (B,) | (B, C), ref_emb (R, D) = None, ref_labels = None,
    self_index (B,) = None) -> 0-dim loss``. Without ``ref_emb`` (or with ``ref_emb is emb``) the
    batch is its own reference and self-pairs are excluded; ``self_index[i] = j`` marks reference
    column ``j`` as row ``i``'s own copy (``-1``: none), as a memory bank needs. ``relation_fn``
    overrides the label relation (see :func:`dmlkit.core.relation_masks`).
    """

    def __init__(
        self,
        term: PairTerm,
        aggregator: PairAggregator,
        miner: PairMiner | None = None,
        similarity: str | Similarity = "cosine",
        relation_fn: RelationFn | None = None,
    ) -> None:
        super().__init__(similarity, relation_fn)
        self.term = term
        self.aggregator = aggregator
        self.miner = miner if miner is not None else AllPairsMiner()

    def from_similarity(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The loss from a precomputed similarity ``S (B, R)`` and label masks."""
        if sim.shape != pos.shape or sim.shape != neg.shape:
            raise ValueError(
                f"masks: expected the shape of S {tuple(sim.shape)}, "
                f"got pos {tuple(pos.shape)}, neg {tuple(neg.shape)}"
            )
        pos, neg = self.miner(sim, pos, neg)
        l_pos, l_neg = self.term(sim)
        loss = self.aggregator(l_pos, l_neg, pos, neg)
        if sim.requires_grad and not loss.requires_grad:
            loss = loss + 0.0 * sim.sum()
        return loss


def pair_weights(
    loss: PairLoss,
    emb: Tensor,
    labels: Tensor,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
) -> Tensor:
    """GPW weights of ``loss`` on this batch: ``W = dL/dS`` of shape ``(B, R)``.

    Positive pairs normally get ``W <= 0`` (raising their similarity lowers the loss) and negative
    pairs ``W >= 0``; ``|W|`` is the weight ``w_ij`` of Wang et al.'s general pair weighting, and
    mined-out pairs get exactly 0. Memory: that of one loss evaluation.
    """
    if not isinstance(loss, PairLoss):
        raise TypeError(f"loss: expected a PairLoss, got {type(loss).__name__}")
    with torch.no_grad():
        sim, pos, neg = loss.pairs(emb, labels, ref_emb, ref_labels)
    sim = sim.detach().requires_grad_(True)
    with torch.enable_grad():
        value = loss.from_similarity(sim, pos, neg)
        (grad,) = torch.autograd.grad(value, sim)
    return grad
