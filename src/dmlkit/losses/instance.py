"""Instance loss as pytorch-metric-learning defines it (``InstanceLoss``, after Zheng et al. 2020,
"Dual-path convolutional image-text embeddings with instance loss").

The batch's own embeddings act as the weights of a softmax classifier: sample ``i``'s logits are
``γ cos(x_i, x_j)`` for every batch column ``j`` (its own column included), and its target column
is the rank ``c(y_i)`` of its label among the batch's sorted distinct labels::

    L = mean_i [ LSE_j γ s_ij - γ s_{i, c(y_i)} ]

So column ``c`` stands for the ``c``-th class present in the batch; the loss is meant for batches
laid out so that the sample at position ``c`` belongs to that class (with one sample per instance
class and labels ``0..B-1`` the target is each sample's own column). Memory: O(B²).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.losses.inputs import LossInputs
from dmlkit.losses.pair_loss import PairLoss


def class_rank_relation(labels: Tensor, ref_labels: Tensor) -> tuple[Tensor, Tensor]:
    """``pos_ij = (j == rank of y_i among the distinct labels)``, ``neg = not pos`` (B, B)."""
    if labels.ndim != 1:
        raise ValueError(
            f"labels: expected class ids (B,) for the instance loss, got {tuple(labels.shape)}"
        )
    target = torch.unique(labels, return_inverse=True)[1]
    pos = target[:, None] == torch.arange(ref_labels.shape[0], device=labels.device)[None, :]
    return pos, ~pos


class InstanceLoss(PairLoss):
    """The pair engine on the batch against itself, self-pairs kept and the relation
    :func:`class_rank_relation`; ``ref_emb`` and ``self_index`` are refused (the batch columns
    are the classes)."""

    takes_references = False

    def chunked(self, chunk_size: int | None) -> PairLoss:
        """Refuses a ``chunk_size``: the target columns are ranks among all the batch's labels."""
        if chunk_size is not None:
            raise ValueError(
                "chunk_size: expected None for the instance loss; its target columns are ranks "
                "among all the batch's labels, not a per-row relation"
            )
        return super().chunked(None)

    def compute(self, x: LossInputs) -> Tensor:
        if not x.symmetric or x.ref_labels is not None:
            raise ValueError(
                "ref_emb: expected None for the instance loss (the batch columns are its classes)"
            )
        if x.self_index is not None:
            raise ValueError("self_index: expected None for the instance loss (self-pairs count)")
        emb = x.emb
        rows = emb.shape[0] if isinstance(emb, Tensor) and emb.ndim > 0 else 0
        keep_self = torch.full((rows,), -1, dtype=torch.long)
        if isinstance(emb, Tensor):
            keep_self = keep_self.to(emb.device)
        return super().compute(LossInputs(emb, x.labels, self_index=keep_self))
