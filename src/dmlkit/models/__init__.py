"""Embedding models: backbones, global pooling, embedding heads, frozen BatchNorm.

    from dmlkit.models import create_model
    model = create_model("bninception", embedding_dim=512, pooling="max", frozen_bn=True,
                         pretrained="weights/bn_inception.pth")
    emb = model(images)                 # (B, 512) float32, unit norm

========== ================================================== ======== ===============
name       backbone                                           F        default pooling
========== ================================================== ======== ===============
small_cnn  4 x [conv 3x3-BN-ReLU] 32-64-128-256, max pooling   256      avg
mlp        flatten -> 2 x [Linear-BN-ReLU] 256                 256      none (vectors)
resnet18   torchvision ResNet-18 (also resnet34)               512      avg
resnet50   torchvision ResNet-50 (also resnet101)              2048     avg
bninception BN-Inception (Ioffe & Szegedy 2015), defined here  1024     avg
vit_small  timm ViT-S/16 tokens                                384      token
========== ================================================== ======== ===============

torchvision and timm are optional (``pip install dmlkit[vision]``); weights are local files
only, never downloaded.
"""

from dmlkit.models import bninception as _bninception  # noqa: F401  (registers bninception)
from dmlkit.models import resnet as _resnet  # noqa: F401  (registers resnet18/34/50/101)
from dmlkit.models import small as _small  # noqa: F401  (registers small_cnn, mlp)
from dmlkit.models import vit as _vit  # noqa: F401  (registers vit_small)
from dmlkit.models.batchnorm import batchnorm_layers, freeze_batchnorm
from dmlkit.models.embedding import EmbeddingModel
from dmlkit.models.head import EmbeddingHead
from dmlkit.models.multihead import MultiHeadEmbeddingModel
from dmlkit.models.pooling import POOLINGS, GlobalPool
from dmlkit.models.registry import (
    MODELS,
    BackboneSpec,
    create_model,
    load_pretrained,
    register_backbone,
)
from dmlkit.models.weights import load_state_dict_strict, read_state_dict

__all__ = [
    "MODELS",
    "POOLINGS",
    "BackboneSpec",
    "EmbeddingHead",
    "EmbeddingModel",
    "GlobalPool",
    "MultiHeadEmbeddingModel",
    "batchnorm_layers",
    "create_model",
    "freeze_batchnorm",
    "load_pretrained",
    "load_state_dict_strict",
    "read_state_dict",
    "register_backbone",
]
