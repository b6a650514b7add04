"""The pair engine: every pair-based loss as ``similarity x relations x miner x term x aggregator``.

    S      = similarity(emb, ref)              (B, R) float32, also under autocast
    P, N   = relations(labels, ref_labels)     bool (B, R); self excluded when ref is the batch
    P, N   = miner(S.detach(), P, N)           which pairs count
    l+, l- = term(S)                           per-pair losses, elementwise
    L      = aggregator(l+, l-, P, N)          how they combine; dL/dl is each pair's weight

Memory: O(B R) (a handful of (B, R) temporaries); time O(B R D) for the similarity plus O(B R)
(O(B R log R) for the sorting miners).

Row blocks (``chunk_size = c``): when the aggregator's loss is assembled from sums over anchors
(``aggregator.chunk_blocker is None``), the B rows are processed ``c`` at a time against all R
reference columns; each block's additive statistics (``aggregator.partial``) are summed and the
loss is ``aggregator.finish`` of the totals, the same value and gradient as in one piece. Each
block runs under :func:`torch.utils.checkpoint.checkpoint`, so the backward recomputes it instead
of keeping it: peak memory O(c R) forward and backward, for about one more forward in time. The
relation, the miner and the term are applied per block (they are row-wise); a miner that draws at
random (``deterministic = False``) mines each block once up front instead, keeping its bool masks,
O(B R) bytes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from dmlkit.core.relations import RelationFn, relation_masks
from dmlkit.core.similarity import Similarity
from dmlkit.losses.aggregators import PairAggregator
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.inputs import LossInputs, resolve_reference
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

    ``chunk_size`` (None: one piece) computes the loss in blocks of that many rows with peak
    memory O(chunk_size R) and the same value and gradient (see the module docstring); it is a
    ``ValueError`` for an aggregator that cannot split its rows, naming the reason. ``relation_fn``
    is then called on each block's labels against all reference labels.

    The loss is 0 and connected to the graph (zero gradients) when no pair is active.
    """

    def __init__(
        self,
        term: PairTerm,
        aggregator: PairAggregator,
        miner: PairMiner | None = None,
        similarity: str | Similarity = "cosine",
        relation_fn: RelationFn | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(similarity, relation_fn)
        miner = miner if miner is not None else AllPairsMiner()
        _check_part(term, PairTerm, "term")
        _check_part(aggregator, PairAggregator, "aggregator")
        _check_part(miner, PairMiner, "miner")
        self.term = term
        self.aggregator = aggregator
        self.miner = miner
        self.chunk_size: int | None = None
        self.chunked(chunk_size)

    def chunked(self, chunk_size: int | None) -> PairLoss:
        """Set ``chunk_size`` (None: one piece) and return ``self``; ``ValueError`` for a size
        below 1 or an aggregator whose rows cannot be split (the message says why)."""
        if chunk_size is not None:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
                raise ValueError(f"chunk_size: expected an int >= 1 or None, got {chunk_size!r}")
            reason = self.aggregator.chunk_blocker
            if reason is None and self.aggregator.unique_pairs:
                reason = "it counts each unordered pair of the batch once"
            if reason is not None:
                raise ValueError(
                    f"chunk_size: expected an aggregator whose loss is a sum over anchors; "
                    f"{type(self.aggregator).__name__} cannot be computed in row blocks: {reason}"
                )
        self.chunk_size = chunk_size
        return self

    def compute(self, x: LossInputs) -> Tensor:
        size, emb = self.chunk_size, x.emb
        if size is not None and isinstance(emb, Tensor) and emb.ndim == 2 and emb.shape[0] > size:
            return self._in_blocks(x)
        sim, pos, neg = self.pairs_of(x)
        return self.from_similarity(sim, pos, neg, symmetric=x.symmetric)

    def _in_blocks(self, x: LossInputs) -> Tensor:
        """The loss from blocks of ``chunk_size`` rows (see the module docstring)."""
        emb = x.emb
        labels, ref, ref_labels, self_index = resolve_reference(x)
        size = self.chunk_size
        assert size is not None
        stats: tuple[Tensor, ...] | None = None
        grad = torch.is_grad_enabled() and (emb.requires_grad or ref.requires_grad)
        for start in range(0, emb.shape[0], size):
            rows = slice(start, start + size)
            index = self_index[rows] if self_index is not None else None
            masks: tuple[Tensor, Tensor] | None = None
            if not self.miner.deterministic:
                with torch.no_grad():
                    sim = self.similarity(emb[rows], ref)
                    masks = self._block_masks(sim, labels[rows], ref_labels, index)
            args = (emb[rows], ref, labels[rows], ref_labels, index, masks)
            if grad:
                block = checkpoint(self._block_stats, *args, use_reentrant=False)
            else:
                block = self._block_stats(*args)
            stats = (
                block if stats is None else tuple(a + b for a, b in zip(stats, block, strict=True))
            )
        assert stats is not None
        loss: Tensor = self.aggregator.finish(stats, emb.shape[0])
        if grad and not loss.requires_grad:
            loss = loss + 0.0 * (emb.sum() + ref.sum())
        return loss

    def _block_masks(
        self, sim: Tensor, labels: Tensor, ref_labels: Tensor, index: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The mined label masks of one block of rows, ``sim (c, R)``."""
        pos, neg = relation_masks(labels, ref_labels, self.relation_fn, index)
        return self.miner(sim, pos, neg)

    def _block_stats(
        self,
        emb: Tensor,
        ref: Tensor,
        labels: Tensor,
        ref_labels: Tensor,
        index: Tensor | None,
        masks: tuple[Tensor, Tensor] | None,
    ) -> tuple[Tensor, ...]:
        """The aggregator's additive statistics of one block of rows against all of ``ref``."""
        sim = self.similarity(emb, ref)
        pos, neg = masks if masks is not None else self._block_masks(sim, labels, ref_labels, index)
        l_pos, l_neg = self.term(sim)
        stats: tuple[Tensor, ...] = self.aggregator.partial(l_pos, l_neg, pos, neg)
        return stats

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
