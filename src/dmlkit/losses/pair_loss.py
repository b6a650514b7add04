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


def _check_part(value: object, kind: type, name: str) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{name}: expected a {kind.__name__}, got {type(value).__name__}")


class PairLoss(BatchLoss):
    """A pair loss composed of a ``term``, an ``aggregator``, a ``miner`` (``None``: all pairs) and a
    ``similarity`` (name or :class:`~dmlkit.core.similarity.Similarity`); the optional miner comes
    after the required aggregator.

    ``forward(emb (B, D), labels (B,) | (B, C), ref_emb (R, D) = None, ref_labels = None,
    self_index (B,) = None) -> 0-dim loss``. Without ``ref_emb`` (or with ``ref_emb is emb``) the
    batch is its own reference and self-pairs are excluded; ``self_index[i] = j`` marks reference
    column ``j`` as row ``i``'s own copy (``-1``: none), as a memory bank needs. ``relation_fn``
    overrides the label relation (see :func:`dmlkit.core.relation_masks`).

    The loss is 0 and connected to the graph (zero gradients) when no pair is active.
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
        miner = miner if miner is not None else AllPairsMiner()
        _check_part(term, PairTerm, "term")
        _check_part(aggregator, PairAggregator, "aggregator")
        _check_part(miner, PairMiner, "miner")
        self.term = term
        self.aggregator = aggregator
        self.miner = miner

    def forward(
        self,
        emb: Tensor,
        labels: Tensor,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
        self_index: Tensor | None = None,
    ) -> Tensor:
        sim, pos, neg = self.pairs(emb, labels, ref_emb, ref_labels, self_index)
        return self.from_similarity(sim, pos, neg, symmetric=ref_emb is None or ref_emb is emb)

    def from_similarity(
        self, sim: Tensor, pos: Tensor, neg: Tensor, symmetric: bool = False
    ) -> Tensor:
        """The loss from a precomputed similarity ``S (B, R)`` and bool label masks ``(B, R)``.

        ``symmetric=True`` says that the reference is the batch itself (``S_ij`` and ``S_ji`` are
        one pair); it matters only to aggregators that ask for unique pairs.
        """
        if not isinstance(sim, Tensor) or sim.ndim != 2 or not sim.is_floating_point():
            got = (sim.dtype, tuple(sim.shape)) if isinstance(sim, Tensor) else type(sim).__name__
            raise ValueError(f"sim: expected a floating-point (B, R) matrix, got {got}")
        for name, mask in (("pos", pos), ("neg", neg)):
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != sim.shape:
                got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, Tensor) else mask
                raise ValueError(
                    f"{name}: expected a bool mask of the shape of S {tuple(sim.shape)}, got {got}"
                )
        pos, neg = self.miner(sim, pos, neg)
        if symmetric and self.aggregator.unique_pairs:
            pos, neg = _upper_pairs(pos), _upper_pairs(neg)
        l_pos, l_neg = self.term(sim)
        loss: Tensor = self.aggregator(l_pos, l_neg, pos, neg)
        if sim.requires_grad and not loss.requires_grad:
            loss = loss + 0.0 * sim.sum()
        return loss


def _upper_pairs(mask: Tensor) -> Tensor:
    """Each unordered pair of a square mask once, at ``(i, j)`` with ``i < j``; active when either
    ordered copy is."""
    if mask.shape[0] != mask.shape[1]:
        raise ValueError(
            f"symmetric: expected a square (B, B) batch matrix, got {tuple(mask.shape)}"
        )
    return torch.triu(mask | mask.T, diagonal=1)
