"""Explicit-loop references of the average-precision surrogates (float64, tiny inputs).

Each takes the cosine similarity ``sim (B, R)`` and the bool masks ``pos, neg (B, R)`` as plain
nested lists of the relations, and walks anchors, positives and references one at a time.
"""

from __future__ import annotations

import torch


def cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    rows = []
    for a in x:
        rows.append(torch.stack([(a @ b) / (a.norm() * b.norm()) for b in y]))
    return torch.stack(rows)


def sigmoid(v: torch.Tensor, tau: float) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-v / tau))


def _anchor_mean(per_anchor: list[torch.Tensor]) -> torch.Tensor:
    if not per_anchor:
        return torch.zeros((), dtype=torch.float64)
    return sum(per_anchor) / len(per_anchor)


def smooth_ap(sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, tau: float) -> torch.Tensor:
    """``mean_i (1 - 1/|P_i| Σ_j (1 + Σ_{k∈P,k≠j} σ) / (1 + Σ_{k∈P∪N,k≠j} σ))``."""
    losses = []
    for i in range(sim.shape[0]):
        positives = [j for j in range(sim.shape[1]) if pos[i, j]]
        if not positives:
            continue
        total = torch.zeros((), dtype=torch.float64)
        for j in positives:
            rank_pos = torch.ones((), dtype=torch.float64)
            rank_all = torch.ones((), dtype=torch.float64)
            for k in range(sim.shape[1]):
                if k == j or not (pos[i, k] or neg[i, k]):
                    continue
                s = sigmoid(sim[i, k] - sim[i, j], tau)
                rank_all = rank_all + s
                if pos[i, k]:
                    rank_pos = rank_pos + s
            total = total + rank_pos / rank_all
        losses.append(1.0 - total / len(positives))
    return _anchor_mean(losses)


def pnp(
    sim: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    tau: float,
    variant: str,
    alpha: float = 1.0,
    b: float = 2.0,
) -> torch.Tensor:
    """``mean_i mean_{j∈P_i} f(Σ_{k∈N_i} σ((S_ik - S_ij)/τ))`` for the variant's ``f``."""
    losses = []
    for i in range(sim.shape[0]):
        positives = [j for j in range(sim.shape[1]) if pos[i, j]]
        if not positives:
            continue
        total = torch.zeros((), dtype=torch.float64)
        for j in positives:
            r = torch.zeros((), dtype=torch.float64)
            for k in range(sim.shape[1]):
                if neg[i, k]:
                    r = r + sigmoid(sim[i, k] - sim[i, j], tau)
            if variant == "O":
                f = r
            elif variant == "Ds":
                f = torch.log(1 + r)
            elif variant == "Dq":
                f = 1 - 1 / (1 + r) ** alpha
            elif variant == "Iu":
                f = (1 + r) * torch.log(1 + r)
            else:
                f = (b * r - torch.log(1 + b * r)) / b**2
            total = total + f
        losses.append(total / len(positives))
    return _anchor_mean(losses)


def fast_ap(sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, bins: int) -> torch.Tensor:
    """``mean_i (1 - 1/|P_i| Σ_b h+_b H+_b / H_b)`` with triangular kernels on ``d² = 2 - 2s``."""
    delta = 4.0 / bins
    losses = []
    for i in range(sim.shape[0]):
        n_pos = int(pos[i].sum())
        if n_pos == 0:
            continue
        ap = torch.zeros((), dtype=torch.float64)
        cum_pos = torch.zeros((), dtype=torch.float64)
        cum_all = torch.zeros((), dtype=torch.float64)
        for b in range(bins + 1):
            centre = 4.0 * b / bins
            h_pos = torch.zeros((), dtype=torch.float64)
            h_all = torch.zeros((), dtype=torch.float64)
            for k in range(sim.shape[1]):
                if not (pos[i, k] or neg[i, k]):
                    continue
                d2 = 2.0 - 2.0 * sim[i, k]
                kernel = torch.clamp(1.0 - (d2 - centre).abs() / delta, min=0.0)
                h_all = h_all + kernel
                if pos[i, k]:
                    h_pos = h_pos + kernel
            cum_pos, cum_all = cum_pos + h_pos, cum_all + h_all
            if float(cum_all) > 0:
                ap = ap + h_pos * cum_pos / cum_all
        losses.append(1.0 - ap / n_pos)
    return _anchor_mean(losses)


def class_masks(
    labels: torch.Tensor, ref_labels: torch.Tensor, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks by explicit comparison; ``exclude_self`` drops ``(i, i)``."""
    b, r = labels.shape[0], ref_labels.shape[0]
    pos = torch.zeros(b, r, dtype=torch.bool)
    neg = torch.zeros(b, r, dtype=torch.bool)
    for i in range(b):
        for j in range(r):
            if exclude_self and i == j:
                continue
            if labels.ndim == 2:
                same = bool((labels[i] * ref_labels[j]).sum() > 0)
            else:
                same = bool(labels[i] == ref_labels[j])
            pos[i, j], neg[i, j] = same, not same
    return pos, neg
