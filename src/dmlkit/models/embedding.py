"""``EmbeddingModel``: backbone -> global pooling -> embedding head.

    f = pool(backbone(x))          (B, F)   forward_features
    e = N(BN(W f + b))             (B, D)   head; forward(x) = head(forward_features(x))

``x`` is ``(B, C, H, W)`` images (also channels-last; flat ``(B, F_in)`` vectors for the MLP).
The backbone returns a feature map, tokens or vectors (:mod:`dmlkit.models.pooling`); the head is
:class:`~dmlkit.models.head.EmbeddingHead`. Memory: the backbone's activations plus O(B (F + D)).

More heads on the same features (for example a discriminative and a shared embedding) need no
copy of this class: a subclass adds ``heads = nn.ModuleDict(...)`` and applies each to
``forward_features(x)``; :meth:`param_groups` already puts every parameter outside the backbone
into the head group.

``frozen_bn=True`` keeps every BatchNorm of the backbone in eval mode (fixed running statistics)
through ``train()``; ``freeze_bn_affine=True`` also stops their weights and biases from learning
(:mod:`dmlkit.models.batchnorm`). The head's optional BatchNorm is never frozen.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from dmlkit.models.batchnorm import freeze_batchnorm
from dmlkit.models.head import EmbeddingHead
from dmlkit.models.pooling import GlobalPool


class EmbeddingModel(nn.Module):
    """``backbone`` + ``pool`` + ``head`` (module docstring).

    ``input_ndims``: the input ranks the backbone accepts (4 for images; 2 and 4 for the MLP).
    Attributes ``embedding_dim`` (D) and ``num_features`` (F).
    """

    def __init__(
        self,
        backbone: nn.Module,
        pool: GlobalPool,
        head: EmbeddingHead,
        frozen_bn: bool = False,
        freeze_bn_affine: bool = False,
        input_ndims: tuple[int, ...] = (4,),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = pool
        self.head = head
        self.embedding_dim = head.linear.out_features
        self.num_features = head.linear.in_features
        self.frozen_bn = frozen_bn
        self.freeze_bn_affine = freeze_bn_affine
        self.input_ndims = input_ndims
        if frozen_bn:
            freeze_batchnorm(self.backbone, affine=freeze_bn_affine)

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled backbone features ``(B, F)``."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            what = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"x: expected a floating-point image tensor, got {what}")
        if x.ndim not in self.input_ndims:
            raise ValueError(
                f"x: expected a {' or '.join(map(str, self.input_ndims))}-D batch "
                f"(B, C, H, W), got shape {tuple(x.shape)}"
            )
        return self.pool(self.backbone(x))

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings ``(B, D)`` float32, unit norm when the head normalises."""
        return self.head(self.forward_features(x))

    def train(self, mode: bool = True) -> EmbeddingModel:
        """Set the training mode; the backbone's BatchNorm stays frozen with ``frozen_bn``."""
        super().train(mode)
        if self.frozen_bn:
            freeze_batchnorm(self.backbone, affine=self.freeze_bn_affine)
        return self

    def param_groups(
        self, backbone_lr: float, head_lr: float, weight_decay: float = 0.0
    ) -> list[dict[str, Any]]:
        """Optimizer groups ``"backbone"`` (its trainable parameters at ``backbone_lr``) and
        ``"head"`` (every other trainable parameter at ``head_lr``), both with
        ``weight_decay``; an empty group is left out."""
        in_backbone = {id(p) for p in self.backbone.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {
                "name": "backbone",
                "params": [p for p in trainable if id(p) in in_backbone],
                "lr": backbone_lr,
                "weight_decay": weight_decay,
            },
            {
                "name": "head",
                "params": [p for p in trainable if id(p) not in in_backbone],
                "lr": head_lr,
                "weight_decay": weight_decay,
            },
        ]
        return [g for g in groups if g["params"]]
