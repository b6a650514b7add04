"""``MultiHeadEmbeddingModel``: one backbone, several embedding heads on the same features.

    f   = pool(backbone(x))                        (B, F)
    e_h = N(W_h f + b_h)                           (B, D_h) for each head h, in order
    forward(x) = [e_1, e_2, ...]                   (B, Σ D_h) the concatenation

Each head is an :class:`~dmlkit.models.head.EmbeddingHead` (unit norm with ``normalize``), so the
concatenation has norm ``sqrt(#heads)``; :meth:`split` cuts it back into the heads and
:func:`dmlkit.evaluation.heads.head_embeddings` scores each head and weighted re-normalised
concatenations. "Sharing Matters" uses ``heads={"discriminative": 128, "shared": 128}`` on a
ResNet-50. Built through the registry: ``create_model(name, embedding_dim=sum, heads={...})``.
Memory: the backbone's activations plus O(B (F + Σ D_h)).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from dmlkit.evaluation.heads import split_heads
from dmlkit.models.embedding import EmbeddingModel
from dmlkit.models.head import EmbeddingHead
from dmlkit.models.pooling import GlobalPool


def check_head_dims(heads: object, embedding_dim: int | None = None) -> dict[str, int]:
    """``heads`` as an ordered ``{name: D_h}`` of positive ints; with ``embedding_dim``, also
    require ``Σ D_h == embedding_dim``."""
    if not isinstance(heads, Mapping) or len(heads) < 1:
        raise ValueError(f"heads: expected a mapping of head names to dimensions, got {heads!r}")
    dims: dict[str, int] = {}
    for name, dim in heads.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"heads: expected non-empty text names, got {name!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"heads.{name}: expected a positive dimension, got {dim!r}")
        dims[name] = dim
    if embedding_dim is not None and sum(dims.values()) != embedding_dim:
        raise ValueError(
            f"heads: expected dimensions that add up to embedding_dim={embedding_dim} (the "
            f"concatenated output), got {dims} (sum {sum(dims.values())})"
        )
    return dims


class MultiHeadEmbeddingModel(EmbeddingModel):
    """``backbone`` + ``pool`` + named ``heads`` whose outputs are concatenated (module docstring).

    Attributes ``head_dims`` (``{name: D_h}`` in output order) and ``embedding_dim`` (``Σ D_h``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        pool: GlobalPool,
        heads: Mapping[str, EmbeddingHead],
        frozen_bn: bool = False,
        freeze_bn_affine: bool = False,
        input_ndims: tuple[int, ...] = (4,),
    ) -> None:
        if not heads:
            raise ValueError("heads: expected at least one embedding head, got none")
        first = next(iter(heads.values()))
        super().__init__(backbone, pool, first, frozen_bn, freeze_bn_affine, input_ndims)
        del self.head  # the heads live in ``self.heads``
        self.heads = nn.ModuleDict(dict(heads))
        in_features = {h.linear.in_features for h in heads.values()}
        if in_features != {self.num_features}:
            raise ValueError(
                f"heads: expected every head to take the {self.num_features} pooled features, "
                f"got input sizes {sorted(in_features)}"
            )
        self.head_dims = {name: h.linear.out_features for name, h in heads.items()}
        self.embedding_dim = sum(self.head_dims.values())

    def forward_heads(self, x: Tensor) -> dict[str, Tensor]:
        """``{name: e_h (B, D_h)}`` from one backbone pass."""
        feat = self.forward_features(x)
        return {name: head(feat) for name, head in self.heads.items()}

    def forward(self, x: Tensor) -> Tensor:
        """The concatenated embeddings ``(B, Σ D_h)`` float32 (each head unit norm)."""
        return torch.cat(list(self.forward_heads(x).values()), dim=1)

    def split(self, emb: Tensor) -> dict[str, Tensor]:
        """Cut a concatenated ``emb (B, Σ D_h)`` into ``{name: (B, D_h)}`` views."""
        return split_heads(emb, self.head_dims)
