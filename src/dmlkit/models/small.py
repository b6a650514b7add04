"""Small backbones for the offline sets (8x8 digits, 28x28 Fashion-MNIST, 32x32 glyphs) on a CPU.

``small_cnn``: one [conv 3x3 - BN - ReLU] block per width in ``widths`` (default 32, 64, 128,
256: 0.39 M parameters for one input channel), with 2x2 max pooling after every block but the
last; the output is a ``(B, widths[-1], H / 2^(n-1), W / 2^(n-1))`` feature map, so inputs need
a side of at least ``2^(n-1)`` (8 px for four blocks). About 15 M multiply-adds per 32x32 image.

``mlp``: flatten -> [Linear - BN - ReLU] per width in ``hidden``; for flat inputs ``(B, F)`` or
images flattened to ``F = in_channels * image_size^2``; the output is ``(B, hidden[-1])``
vectors (pooling ``none``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dmlkit.models.layers import ConvBN
from dmlkit.models.registry import BackboneSpec, register_backbone


def _check_widths(name: str, widths: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(widths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"{name}: expected a non-empty list of positive ints, got {list(widths)}")
    return widths


class SmallCNN(nn.Sequential):
    """Conv blocks with max pooling between them (module docstring); ``(B, C, H, W)`` ->
    ``(B, widths[-1], H', W')``."""

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128, 256)) -> None:
        widths = _check_widths("widths", widths)
        layers: list[nn.Module] = []
        for k, width in enumerate(widths):
            if k:
                layers.append(nn.MaxPool2d(2))
            layers.append(ConvBN(widths[k - 1] if k else in_channels, width, 3))
        super().__init__(*layers)
        self.num_blocks = len(widths)
        self.min_side = 2 ** (len(widths) - 1)

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < self.min_side:
            raise ValueError(
                f"small_cnn: expected images of at least {self.min_side}x{self.min_side} px "
                f"for {self.num_blocks} blocks, got {tuple(x.shape[-2:])}"
            )
        return super().forward(x)


class MLP(nn.Sequential):
    """Flatten -> [Linear - BN - ReLU] per hidden width; ``(B, F)`` or ``(B, C, H, W)`` with
    ``C H W = F`` -> ``(B, hidden[-1])``."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 256)) -> None:
        hidden = _check_widths("hidden", hidden)
        if in_features < 1:
            raise ValueError(f"in_features: expected a positive int, got {in_features}")
        layers: list[nn.Module] = [nn.Flatten()]
        for k, width in enumerate(hidden):
            fan_in = hidden[k - 1] if k else in_features
            layers += [nn.Linear(fan_in, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(True)]
        super().__init__(*layers)
        self.in_features = in_features

    def forward(self, x: Tensor) -> Tensor:
        features = x[0].numel() if len(x) else 0
        if features != self.in_features:
            raise ValueError(
                f"mlp: expected {self.in_features} input features per item, got shape "
                f"{tuple(x.shape)} ({features}); set in_features or image_size"
            )
        return super().forward(x)


@register_backbone("small_cnn")
def small_cnn(in_channels: int = 1, widths: Sequence[int] = (32, 64, 128, 256)) -> BackboneSpec:
    """Small CNN for 8-32 px images (:class:`SmallCNN`); default pooling ``avg``."""
    net = SmallCNN(in_channels, widths)
    return BackboneSpec(net, num_features=tuple(widths)[-1])


@register_backbone("mlp")
def mlp(
    in_channels: int = 1,
    image_size: int = 8,
    in_features: int | None = None,
    hidden: Sequence[int] = (256, 256),
) -> BackboneSpec:
    """MLP (:class:`MLP`) over ``in_features`` inputs (default ``in_channels * image_size^2``)."""
    features = in_channels * image_size * image_size if in_features is None else in_features
    net = MLP(features, hidden)
    return BackboneSpec(
        net,
        num_features=tuple(hidden)[-1],
        layout="vector",
        default_pooling="none",
        input_ndims=(2, 4),
    )
