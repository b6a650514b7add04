"""Head views of a multi-head embedding: each head, weighted re-normalised concatenations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dmlkit.evaluation.heads import combine_heads, head_embeddings, split_heads

DIMS = {"discriminative": 3, "shared": 2}


def _emb() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    disc = F.normalize(torch.randn(4, 3, generator=g), dim=1)
    shared = F.normalize(torch.randn(4, 2, generator=g), dim=1)
    return torch.cat([disc, shared], dim=1)


def test_split_and_weighted_concatenation() -> None:
    emb = _emb()
    heads = split_heads(emb, DIMS)
    assert torch.equal(heads["discriminative"], emb[:, :3])
    assert torch.equal(heads["shared"], emb[:, 3:])
    combined = combine_heads(emb, DIMS, {"discriminative": 0.5, "shared": 1.5})
    expected = torch.cat([0.5 * emb[:, :3], 1.5 * emb[:, 3:]], 1) / (0.5**2 + 1.5**2) ** 0.5
    torch.testing.assert_close(combined, expected)
    # cosine of the combination = weighted mean of the heads' cosines (unit heads)
    cos = combined @ combined.T
    heads_cos = 0.25 * heads["discriminative"] @ heads["discriminative"].T
    heads_cos = (heads_cos + 2.25 * heads["shared"] @ heads["shared"].T) / 2.5
    torch.testing.assert_close(cos, heads_cos)
    only_shared = combine_heads(emb, DIMS, {"discriminative": 0.0, "shared": 2.0})
    torch.testing.assert_close(only_shared, heads["shared"])


def test_views_hold_heads_then_combinations() -> None:
    views = head_embeddings(_emb(), DIMS, {"concat": {"discriminative": 1.0, "shared": 1.0}})
    assert list(views) == ["discriminative", "shared", "concat"]
    torch.testing.assert_close(views["concat"].norm(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="already the name"):
        head_embeddings(_emb(), DIMS, {"shared": {"shared": 1.0}})


def test_bad_weights_and_shapes() -> None:
    with pytest.raises(ValueError, match="unknown head"):
        combine_heads(_emb(), DIMS, {"intra": 1.0})
    with pytest.raises(ValueError, match="at least one positive"):
        combine_heads(_emb(), DIMS, {"shared": 0.0})
    with pytest.raises(ValueError, match=">= 0"):
        combine_heads(_emb(), DIMS, {"shared": -1.0, "discriminative": 1.0})
    with pytest.raises(ValueError, match=r"expected shape \(N, 5\)"):
        split_heads(torch.zeros(2, 4), DIMS)
