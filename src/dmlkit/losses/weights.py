"""General pair weighting (Wang et al. 2019): the weight of every pair is ``W = dL/dS``.

For any loss that is a function of the similarity matrix ``S (B, R)``, the gradient with respect to
the embeddings is ``Σ_ij W_ij dS_ij/dθ``, so ``W`` says how hard each pair pulls. Positive pairs
normally get ``W <= 0`` (raising their similarity lowers the loss) and negative pairs ``W >= 0``;
``|W|`` is the weight ``w_ij`` of GPW, and pairs that are mined out or outside both relations get
exactly 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.losses.base import BatchLoss
from dmlkit.losses.inputs import LossInputs
from dmlkit.losses.pair_loss import PairLoss


def pair_weights(loss: BatchLoss, *inputs: Tensor | None) -> Tensor:
    """GPW weights ``W = dL/dS`` of ``loss`` on this batch, shape ``(B, R)`` (dtype of ``S``).

    ``loss`` is any batch loss of dmlkit (a :class:`PairLoss` or a triplet-family loss); the
    ``inputs`` are those of its ``forward``: ``emb, labels[, ref_emb, ref_labels, self_index]``. For an aggregator that counts unique pairs with the
    batch as its own reference, each unordered pair's weight sits at ``(i, j)``, ``i < j``.
    Memory: that of one loss evaluation plus ``W``.
    """
    if not isinstance(loss, BatchLoss):
        raise TypeError(
            f"loss: expected a dmlkit batch loss (PairLoss, TripletLoss, ...), "
            f"got {type(loss).__name__}"
        )
    x = LossInputs(*inputs)  # type: ignore[arg-type]
    with torch.no_grad():
        sim, pos, neg = loss.pairs_of(x)
    sim = sim.detach().requires_grad_(True)
    with torch.enable_grad():
        if isinstance(loss, PairLoss):
            value = loss.from_similarity(sim, pos, neg, symmetric=x.symmetric)
        else:
            value = loss.from_similarity(sim, pos, neg)
        (grad,) = torch.autograd.grad(value, sim, allow_unused=True)
    return grad if grad is not None else torch.zeros_like(sim)
