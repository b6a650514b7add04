"""BN-Inception (Ioffe & Szegedy 2015, "Batch Normalization", the Inception network of its
Figure 5), the backbone of the multi-similarity, DRO and chance-constrained-proxy experiments.

Neither torchvision nor timm ships it (torchvision's GoogLeNet is Inception v1 with 5x5 branches
computed as 3x3 and a different stem; timm has Inception v3/v4), so it is defined here from the
paper's table. Every convolution is followed by BatchNorm and ReLU; each Inception block
concatenates, in this order, a 1x1 branch, a 1x1 -> 3x3 branch, a 1x1 -> 3x3 -> 3x3 branch and
a pooling branch (average or max pooling, then a 1x1 projection, or the pooled input itself in
the two stride-2 blocks 3c and 4e)::

    stem: conv 7x7/2 (64) - maxpool 3/2 - conv 1x1 (64) - conv 3x3 (192) - maxpool 3/2
    block  1x1  3x3red 3x3  dbl-red dbl-3x3  pool       stride   out
    3a      64   64     64   64      96      avg + 32     1      256
    3b      64   64     96   64      96      avg + 64     1      320
    3c       -  128    160   64      96      max          2      576
    4a     224   64     96   96     128      avg + 128    1      576
    4b     192   96    128   96     128      avg + 128    1      576
    4c     160  128    160  128     160      avg + 128    1      608
    4d      96  128    192  160     192      avg + 128    1      608
    4e       -  128    192  192     256      max          2     1056
    5a     352  192    320  160     224      avg + 128    1     1024
    5b     352  192    320  192     224      max + 128    1     1024

Pooling layers round up (``ceil_mode``) and convolutions down, as in the Caffe original, so a
224 or 227 px input gives a ``(B, 1024, 7, 7)`` map and a 32 px input a 1x1 map; blocks 3c and
4e need an even input map (sides such as 224, 227, 256 or multiples of 32 work; others raise a
``ValueError``). About 10.2 M parameters.

Weights: the widely used ImageNet weights converted from Caffe (files such as
``bn_inception-52deb4733.pth``) name their layers ``conv1_7x7_s2``, ``inception_3a_1x1_bn``, ...;
:func:`caffe_key` maps those names onto this module, so such a file loads as ``pretrained`` with
strict key matching (its classifier ``last_linear`` is dropped). Those weights expect BGR input in
the 0-255 range minus the mean (104, 117, 128), with no division by a standard deviation; the
convolutions carry biases, as in the original. BatchNorm uses PyTorch's defaults (eps 1e-5,
momentum 0.1).
"""

from __future__ import annotations

import re
from collections import OrderedDict

import torch
from torch import Tensor, nn

from dmlkit.models.layers import ConvBN
from dmlkit.models.registry import BackboneSpec, register_backbone

# name, 1x1, 3x3 reduce, 3x3, double reduce, double 3x3, pool kind, pool projection, stride
BLOCKS: tuple[tuple[str, int, int, int, int, int, str, int, int], ...] = (
    ("3a", 64, 64, 64, 64, 96, "avg", 32, 1),
    ("3b", 64, 64, 96, 64, 96, "avg", 64, 1),
    ("3c", 0, 128, 160, 64, 96, "max", 0, 2),
    ("4a", 224, 64, 96, 96, 128, "avg", 128, 1),
    ("4b", 192, 96, 128, 96, 128, "avg", 128, 1),
    ("4c", 160, 128, 160, 128, 160, "avg", 128, 1),
    ("4d", 96, 128, 192, 160, 192, "avg", 128, 1),
    ("4e", 0, 128, 192, 192, 256, "max", 0, 2),
    ("5a", 352, 192, 320, 160, 224, "avg", 128, 1),
    ("5b", 352, 192, 320, 192, 224, "max", 128, 1),
)
# Caffe unit name inside a block -> (branch, position in the branch)
CAFFE_UNITS = {
    "1x1": ("branch_1x1", 0),
    "3x3_reduce": ("branch_3x3", 0),
    "3x3": ("branch_3x3", 1),
    "double_3x3_reduce": ("branch_double", 0),
    "double_3x3_1": ("branch_double", 1),
    "double_3x3_2": ("branch_double", 2),
    "pool_proj": ("branch_pool", 1),
}
_CAFFE_BLOCK = re.compile(r"(inception_\d[a-e])_(\w+)")


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> ConvBN:
    return ConvBN(in_channels, out_channels, kernel, stride, bias=True)


class InceptionBlock(nn.Module):
    """One block of the table: ``(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)``."""

    def __init__(
        self,
        name: str,
        in_channels: int,
        n1x1: int,
        n3x3_reduce: int,
        n3x3: int,
        double_reduce: int,
        double: int,
        pool: str,
        projection: int,
        stride: int,
    ) -> None:
        super().__init__()
        self.name = name
        self.stride = stride
        self.branch_1x1 = nn.Sequential(_conv(in_channels, n1x1, 1)) if n1x1 else None
        self.branch_3x3 = nn.Sequential(
            _conv(in_channels, n3x3_reduce, 1), _conv(n3x3_reduce, n3x3, 3, stride)
        )
        self.branch_double = nn.Sequential(
            _conv(in_channels, double_reduce, 1),
            _conv(double_reduce, double, 3),
            _conv(double, double, 3, stride),
        )
        if pool == "avg":
            pooling: nn.Module = nn.AvgPool2d(3, stride, padding=1, ceil_mode=True)
        else:
            pooling = nn.MaxPool2d(3, stride, padding=1 if stride == 1 else 0, ceil_mode=True)
        proj = [_conv(in_channels, projection, 1)] if projection else []
        self.branch_pool = nn.Sequential(pooling, *proj)
        self.out_channels = n1x1 + n3x3 + double + (projection or in_channels)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 2 and (x.shape[-2] % 2 or x.shape[-1] % 2):
            raise ValueError(
                f"bninception: block {self.name} needs an even feature map (its convolution and "
                f"pooling branches round differently), got {tuple(x.shape[-2:])}; use an input "
                "side such as 224, 227, 256 or a multiple of 32"
            )
        branches = [self.branch_3x3(x), self.branch_double(x), self.branch_pool(x)]
        if self.branch_1x1 is not None:
            branches.insert(0, self.branch_1x1(x))
        return torch.cat(branches, dim=1)


class BNInception(nn.Sequential):
    """The stem and the ten Inception blocks (module docstring): ``(B, C, H, W)`` ->
    ``(B, 1024, H / 32, W / 32)`` (sizes rounded up)."""

    def __init__(self, in_channels: int = 3) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1_7x7_s2=_conv(in_channels, 64, 7, 2),
            pool1_3x3_s2=nn.MaxPool2d(3, 2, ceil_mode=True),
            conv2_3x3_reduce=_conv(64, 64, 1),
            conv2_3x3=_conv(64, 192, 3),
            pool2_3x3_s2=nn.MaxPool2d(3, 2, ceil_mode=True),
        )
        channels = 192
        for name, *widths in BLOCKS:
            block = InceptionBlock(name, channels, *widths)  # type: ignore[arg-type]
            layers[f"inception_{name}"] = block
            channels = block.out_channels
        super().__init__(layers)
        self.out_channels = channels


def caffe_key(key: str) -> str:
    """A Caffe-converted weight name -> this module's state key; other keys pass unchanged.

    ``conv1_7x7_s2.weight`` -> ``conv1_7x7_s2.conv.weight``;
    ``inception_3a_double_3x3_1_bn.running_mean`` ->
    ``inception_3a.branch_double.1.bn.running_mean``.
    """
    if key.count(".") != 1:
        return key
    unit, param = key.split(".")
    part = "bn" if unit.endswith("_bn") else "conv"
    unit = unit.removesuffix("_bn")
    match = _CAFFE_BLOCK.fullmatch(unit)
    if match is None:
        return f"{unit}.{part}.{param}"
    if match[2] not in CAFFE_UNITS:
        return key
    branch, position = CAFFE_UNITS[match[2]]
    return f"{match[1]}.{branch}.{position}.{part}.{param}"


@register_backbone("bninception")
def bninception(in_channels: int = 3) -> BackboneSpec:
    """BN-Inception (module docstring), 1024 channels; default pooling ``avg``."""
    net = BNInception(in_channels)
    return BackboneSpec(
        net, num_features=net.out_channels, classifier_keys=("last_linear.",), rename_key=caffe_key
    )
