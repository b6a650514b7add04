"""Convolution units shared by the built-in backbones."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


class ConvBN(nn.Sequential):
    """``ReLU(BN(conv_k(x)))``, a ``k x k`` convolution with ``padding = k // 2`` (so stride 1
    keeps the spatial size). State keys: ``conv.weight`` [``conv.bias``], ``bn.*``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, bias: bool = False
    ) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(
                    in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=bias
                ),
                bn=nn.BatchNorm2d(out_channels),
                relu=nn.ReLU(inplace=True),
            )
        )
