"""Shared front end of every batch loss: validate, compute ``S (B, R)`` and the label masks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dmlkit.core.checks import check_embeddings, check_labels, check_same_dim
from dmlkit.core.relations import RelationFn, relation_masks
from dmlkit.core.similarity import Similarity


@dataclass(frozen=True)
class LossInputs:
    """One call of a batch loss: ``emb (B, D)``, ``labels`` (``(B,)`` class ids or ``(B, C)``
    multi-hot), the reference set ``ref_emb (R, D)`` with ``ref_labels`` (``None``: the batch
    itself) and ``self_index (B,)`` (reference column of each row's own copy, ``-1``: none)."""

    emb: Tensor
    labels: Tensor
    ref_emb: Tensor | None = None
    ref_labels: Tensor | None = None
    self_index: Tensor | None = None

    @property
    def symmetric(self) -> bool:
        """Whether the batch is its own reference (each unordered pair appears twice)."""
        return self.ref_emb is None or self.ref_emb is self.emb


def similarity_and_masks(
    similarity: Similarity, relation_fn: RelationFn | None, x: LossInputs
) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``S (B, R)`` (float32 or float64) and bool ``pos, neg (B, R)``.

    Without ``ref_emb`` (or with ``ref_emb is emb``) the batch is its own reference and row ``i``'s
    own column is excluded. ``self_index[i] = j`` excludes reference column ``j`` for row ``i``
    (``-1``: nothing), for references that contain the batch (a memory bank).
    """
    labels, ref_emb, ref_labels, self_index = resolve_reference(x)
    sim = similarity(x.emb, ref_emb)
    pos, neg = relation_masks(labels, ref_labels, relation_fn, self_index)
    return sim, pos, neg


def resolve_reference(x: LossInputs) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Validate the inputs of a batch loss; return ``(labels, ref_emb, ref_labels, self_index)``
    with the batch as its own reference (``self_index = arange(B)``) when ``ref_emb`` is None or
    ``emb`` itself, and the labels on ``emb``'s device."""
    emb, labels, ref_emb, ref_labels, self_index = (
        x.emb,
        x.labels,
        x.ref_emb,
        x.ref_labels,
        x.self_index,
    )
    check_embeddings(emb, "emb")
    check_labels(labels, emb.shape[0], "labels")
    labels = labels.to(emb.device)
    if ref_emb is None or ref_emb is emb:
        if ref_labels is not None and ref_labels is not labels:
            raise ValueError("ref_labels: given without ref_emb; pass both or neither")
        ref_emb, ref_labels = emb, labels
        if self_index is None:
            self_index = torch.arange(emb.shape[0], device=emb.device)
    else:
        check_embeddings(ref_emb, "ref_emb")
        check_same_dim(emb, ref_emb)
        if ref_labels is None:
            raise ValueError("ref_labels: expected labels for ref_emb, got None")
        check_labels(ref_labels, ref_emb.shape[0], "ref_labels")
        ref_labels = ref_labels.to(emb.device)
    if self_index is not None and tuple(self_index.shape) != (emb.shape[0],):
        raise ValueError(
            f"self_index: expected shape ({emb.shape[0]},), got {tuple(self_index.shape)}"
        )
    return labels, ref_emb, ref_labels, self_index
