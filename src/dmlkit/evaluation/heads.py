"""Views of a multi-head embedding for evaluation: each head alone and weighted concatenations.

A model with heads ``h = 1..H`` of dimensions ``D_h`` outputs ``emb (N, Σ D_h)``, the heads side
by side. A weighted concatenation with weights ``w_h >= 0`` (DiVA's combined evaluation) is

    c = N([w_1 e_1, ..., w_H e_H])             (N, Σ_{w_h > 0} D_h)

with ``N`` the L2 normalisation over the whole row (heads with weight 0 are left out). With unit
norm heads, ``w`` sets how much each head counts in the cosine ``<c_i, c_j> ∝ Σ_h w_h² <e_ih, e_jh>``.
Memory O(N Σ D_h).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor


def split_heads(emb: Tensor, dims: Mapping[str, int]) -> dict[str, Tensor]:
    """Cut ``emb (N, Σ D_h)`` into ``{name: (N, D_h)}`` views, in the order of ``dims``."""
    total = sum(dims.values())
    if emb.ndim != 2 or emb.shape[1] != total:
        raise ValueError(
            f"emb: expected shape (N, {total}) for heads {dict(dims)}, got {tuple(emb.shape)}"
        )
    parts = torch.split(emb, list(dims.values()), dim=1)
    return dict(zip(dims, parts, strict=True))


def combine_heads(emb: Tensor, dims: Mapping[str, int], weights: Mapping[str, float]) -> Tensor:
    """The re-normalised weighted concatenation ``c (N, Σ_{w_h > 0} D_h)`` (module docstring)."""
    heads = split_heads(emb, dims)
    unknown = sorted(set(weights) - set(heads))
    if unknown:
        raise ValueError(f"weights: unknown head(s) {unknown}; expected names from {list(heads)}")
    bad = {name: w for name, w in weights.items() if not w >= 0}
    if bad or not any(w > 0 for w in weights.values()):
        raise ValueError(
            f"weights: expected weights >= 0, at least one positive, got {dict(weights)}"
        )
    parts = [weights[name] * heads[name] for name in heads if weights.get(name, 0) > 0]
    return F.normalize(torch.cat(parts, dim=1), dim=1)


def head_embeddings(
    emb: Tensor,
    dims: Mapping[str, int],
    combinations: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Tensor]:
    """``{head name: e_h}`` for every head, then ``{combination name: c}`` for every weighted
    concatenation in ``combinations`` (``{name: {head: weight}}``); names must not repeat."""
    views = split_heads(emb, dims)
    for name, weights in (combinations or {}).items():
        if name in views:
            raise ValueError(f"combinations: {name!r} is already the name of a head or combination")
        views[name] = combine_heads(emb, dims, weights)
    return views
