"""torchvision ResNets (He et al. 2016) as feature-map backbones, built without weights.

``resnet18``, ``resnet34``: 512 channels; ``resnet50``, ``resnet101``: 2048 channels; output
``(B, F, H / 32, W / 32)``. The module keeps torchvision's layer names (``conv1``, ``bn1``,
``layer1`` ... ``layer4``) without ``avgpool`` and ``fc``, so a torchvision ImageNet file (for
example ``resnet50-0676ba61.pth``) loads as ``pretrained`` with strict key matching, its ``fc``
classifier dropped; it expects RGB input in [0, 1] normalised with the ImageNet mean and std.
``in_channels`` other than 3 replaces ``conv1`` (such a model cannot take RGB weights). Further
options (``zero_init_residual``, ``replace_stride_with_dilation``, ...) go to torchvision.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Any

from torch import nn

from dmlkit.models.optional import import_vision
from dmlkit.models.registry import BackboneSpec, register_backbone

DEPTHS = (18, 34, 50, 101)


def resnet(depth: int, in_channels: int = 3, **options: Any) -> BackboneSpec:
    """torchvision ``resnet{depth}`` without its pooling and classifier (module docstring)."""
    name = f"resnet{depth}"
    if "weights" in options or "pretrained" in options:
        raise ValueError(
            f"{name}: weights are never downloaded; pass pretrained=<path of a local file>"
        )
    models = import_vision("torchvision.models", name)
    net = getattr(models, name)(weights=None, **options)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 7, 2, 3, bias=False)
    layers = [(n, m) for n, m in net.named_children() if n not in ("avgpool", "fc")]
    return BackboneSpec(
        nn.Sequential(OrderedDict(layers)),
        num_features=net.fc.in_features,
        classifier_keys=("fc.",),
    )


for _depth in DEPTHS:
    register_backbone(f"resnet{_depth}")(partial(resnet, _depth))
