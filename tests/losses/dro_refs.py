"""The official DRO code's semantics, restated from the research notes as explicit loops
(ordered pairs, as the official scripts enumerate them). A test oracle; not library code."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def ordered_pair_losses(
    x: Tensor, y: Tensor, a: float = 0.2, g: float = 0.5, base: str = "margin"
) -> tuple[Tensor, Tensor]:
    """Base losses over ordered pairs (i != j). ``margin``: pos [a + g - s]_+, neg [a - g + s]_+
    (a = 0.2); ``binomial`` (a = 40, b = 2): pos (2/b) log(1 + e^{-b(s - g)}), neg
    (2/a) log(1 + e^{a(s - g)})."""
    xn = x / x.norm(dim=1, keepdim=True)
    s = xn @ xn.T
    pos_l, neg_l = [], []
    for i in range(len(y)):
        for j in range(len(y)):
            if i == j:
                continue
            sij = float(s[i, j])
            if base == "binomial":
                value = (
                    (2 / 2.0) * math.log1p(math.exp(-2.0 * (sij - g)))
                    if y[i] == y[j]
                    else (2 / 40.0) * math.log1p(math.exp(40.0 * (sij - g)))
                )
                (pos_l if y[i] == y[j] else neg_l).append(value)
            elif y[i] == y[j]:
                pos_l.append(max(a + g - sij, 0.0))
            else:
                neg_l.append(max(a - g + sij, 0.0))
    return torch.tensor(pos_l, dtype=torch.float64), torch.tensor(neg_l, dtype=torch.float64)


def official_topk(x: Tensor, y: Tensor, k_code: int) -> float:
    """mean(topk(all ordered losses, 4K)), or the mean of all when 4K exceeds them."""
    pos_l, neg_l = ordered_pair_losses(x, y)
    all_l = torch.cat([pos_l, neg_l])
    if 4 * k_code > len(all_l):
        return float(all_l.mean())
    return float(torch.topk(all_l, 4 * k_code).values.mean())


def official_topk_pn(x: Tensor, y: Tensor, k_code: int, base: str = "margin") -> float:
    """(Σ topk(pos, 2K) + Σ topk(neg, 2K)) / 4K when both sides have 2K ordered pairs; otherwise
    the official fallback (Σ pos + Σ topk(neg, |P|)) / (2 |P|) over ordered pairs."""
    pos_l, neg_l = ordered_pair_losses(x, y, base=base)
    if 2 * k_code > len(pos_l) or 2 * k_code > len(neg_l):
        top_neg = torch.topk(neg_l, len(pos_l)).values.sum()
        return float((pos_l.sum() + top_neg) / (2 * len(pos_l)))
    top = torch.topk(pos_l, 2 * k_code).values.sum() + torch.topk(neg_l, 2 * k_code).values.sum()
    return float(top / (4 * k_code))


def official_sampled_kl_expectation(x: Tensor, y: Tensor, k_code: int, lam: float) -> float:
    """E[loss] of the sampled DRO-KL: q ∝ exp(l/λ) - 1, truncated to the 4K+1 largest, Σ q~ l."""
    pos_l, neg_l = ordered_pair_losses(x, y)
    losses = torch.cat([pos_l, neg_l])
    q = torch.exp(losses / lam) - 1
    cut = torch.sort(q, descending=True).values[4 * k_code]
    q = torch.where(q >= cut, q, torch.zeros_like(q))
    return float((q / q.sum() * losses).sum())


# presets built on the pair engine whose references live in test_dro.py
DRO_PRESET_NAMES = ("dro_topk", "dro_kl", "dro_topk_pn", "dro_kl_official")
