"""Vision transformer backbone from timm, built without weights.

``vit_small``: timm's ``vit_small_patch16_224`` (ViT-S/16, 384 channels, 22 M parameters) with no
classifier and no pooling of its own, so it returns all tokens after the final LayerNorm,
``(B, 1 + N, 384)`` with the class token first and ``N = (H / 16) (W / 16)`` patch tokens. The
default pooling is ``token`` (the class token); ``avg``/``max``/``avg+max`` pool the patch tokens.
``dynamic_img_size=True`` (default) interpolates the 14 x 14 position embedding to any input
whose sides are multiples of 16. The module keeps timm's parameter names, so a timm weight file
for this architecture (``.safetensors`` or ``.pth``) loads as ``pretrained`` with strict key
matching, its ``head`` classifier dropped. Further options (``drop_path_rate``, ``img_size``, ...)
go to ``timm.create_model``.
"""

from __future__ import annotations

from typing import Any

from dmlkit.models.optional import import_vision
from dmlkit.models.registry import BackboneSpec, register_backbone


@register_backbone("vit_small")
def vit_small(in_channels: int = 3, **options: Any) -> BackboneSpec:
    """timm ViT-S/16 returning its tokens (module docstring); default pooling ``token``."""
    timm = import_vision("timm", "vit_small")
    options.setdefault("dynamic_img_size", True)
    net = timm.create_model(
        "vit_small_patch16_224",
        pretrained=False,
        num_classes=0,
        global_pool="",
        in_chans=in_channels,
        **options,
    )
    return BackboneSpec(
        net,
        num_features=int(net.num_features),
        layout="tokens",
        default_pooling="token",
        num_prefix_tokens=int(net.num_prefix_tokens),
        classifier_keys=("head.",),
    )
