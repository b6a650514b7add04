"""``BatchLoss``: the shared front end of every loss computed on a batch (and optional references).

Subclasses set ``self.similarity`` and ``self.relation_fn`` and implement
``from_similarity(S (B, R), pos (B, R), neg (B, R)) -> loss``; :meth:`BatchLoss.pairs` validates the
inputs and builds ``S`` and the label masks (see :func:`dmlkit.losses.inputs.similarity_and_masks`).
"""

from __future__ import annotations

from torch import Tensor, nn

from dmlkit.core.relations import RelationFn
from dmlkit.core.similarity import Similarity
from dmlkit.losses.inputs import LossInputs, similarity_and_masks


class BatchLoss(nn.Module):
    """``forward(emb (B, D), labels, ref_emb (R, D) = None, ref_labels = None, self_index = None)``.

    ``takes_references``: whether any reference set may stand in for the batch (a memory bank,
    proxies); a loss whose columns must be the batch itself sets it to ``False``.
    """

    takes_references = True

    def __init__(self, similarity: str | Similarity, relation_fn: RelationFn | None) -> None:
        super().__init__()
        self.similarity = (
            similarity if isinstance(similarity, Similarity) else Similarity(similarity)
        )
        self.relation_fn = relation_fn

    def pairs(self, *inputs: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``pairs(emb, labels, ref_emb=None, ref_labels=None, self_index=None)`` (positional, as
        :meth:`forward`): validate; return ``S (B, R)`` and the label masks ``pos, neg (B, R)``."""
        return self.pairs_of(LossInputs(*inputs))  # type: ignore[arg-type]

    def pairs_of(self, x: LossInputs) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`pairs` of one :class:`LossInputs`."""
        return similarity_and_masks(self.similarity, self.relation_fn, x)

    def from_similarity(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def forward(
        self,
        emb: Tensor,
        labels: Tensor,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
        self_index: Tensor | None = None,
    ) -> Tensor:
        """The 0-dim loss of one call (the fields of :class:`LossInputs`), by :meth:`compute`;
        subclasses override :meth:`compute`, never this signature."""
        return self.compute(LossInputs(emb, labels, ref_emb, ref_labels, self_index))

    def compute(self, x: LossInputs) -> Tensor:
        """The loss of one call: by default :meth:`from_similarity` of :meth:`pairs_of`."""
        sim, pos, neg = self.pairs_of(x)
        return self.from_similarity(sim, pos, neg)
