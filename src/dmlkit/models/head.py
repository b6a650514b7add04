"""The embedding head: pooled features -> embedding.

    e = N(BN(W f + b))        f (B, F) -> e (B, D)

``W f + b`` is ``Linear(F, D)`` (PyTorch's default initialisation); ``BN`` an optional
``BatchNorm1d(D)``; ``N(v) = v / max(|v|_2, 1e-12)`` the optional L2 normalisation, so every
embedding has unit norm and a dot product is a cosine similarity. The output is float32 also
under ``torch.autocast`` (the normalisation runs in float32), so losses and similarity matrices
see float32. Memory O(B D).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class EmbeddingHead(nn.Module):
    """``Linear(in_features, embedding_dim)`` -> optional ``BatchNorm1d`` -> optional L2 norm."""

    def __init__(
        self, in_features: int, embedding_dim: int, bn: bool = False, normalize: bool = True
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.linear = nn.Linear(in_features, embedding_dim)
        self.bn = nn.BatchNorm1d(embedding_dim) if bn else None
        self.normalize = normalize

    def forward(self, feat: Tensor) -> Tensor:
        e = self.linear(feat)
        if self.bn is not None:
            e = self.bn(e)
        e = e.float()
        return F.normalize(e, dim=1) if self.normalize else e
