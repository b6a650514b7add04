"""In-batch triplet sampling: all (anchor, positive) pairs, one negative each.

:func:`distance_weighted_triplets` draws the negative of every positive pair (a, p) from the
anchor's negatives with probability ∝ 1/q(d) (Wu et al. 2017; see
:mod:`dmlkit.core.distance_weighting`), through an explicit ``torch.Generator``. Distances are
Euclidean between L2-normalised embeddings, ``d = sqrt(2 - 2 s)`` for cosine ``s``.
Memory O(B R); anchors without a candidate negative yield no triplet.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.core.distance_weighting import distance_weighted_probs


def cosine_to_distance(sim: Tensor) -> Tensor:
    """``d = sqrt(max(2 - 2 s, 1e-12))``: Euclidean distance of unit vectors from their cosine."""
    return (2.0 - 2.0 * sim).clamp_min(1e-12).sqrt()


def distance_weighted_triplets(
    sim: Tensor,
    pos: Tensor,
    neg: Tensor,
    dim: int,
    generator: torch.Generator | None = None,
    lower_cutoff: float = 0.5,
    upper_cutoff: float | None = 1.4,
) -> tuple[Tensor, Tensor, Tensor]:
    """Return index tensors ``(a, p, n)``, one triplet per positive pair with a drawable negative.

    ``sim (B, R)`` cosine similarities, ``pos``/``neg`` bool masks, ``dim`` the embedding dimension.
    """
    with torch.no_grad():
        dist = cosine_to_distance(sim.detach())
        probs = distance_weighted_probs(dist, neg, dim, lower_cutoff, upper_cutoff)
        has_neg = probs.sum(dim=1) > 0
        a, p = torch.nonzero(pos & has_neg[:, None], as_tuple=True)
        if a.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long, device=sim.device)
            return empty, empty.clone(), empty.clone()
        rows = probs[a].to("cpu", torch.float64)
        n = torch.multinomial(rows, 1, replacement=True, generator=generator).squeeze(1)
        return a, p, n.to(sim.device)
