"""Frozen BatchNorm: normalise with fixed running statistics, as DML fine-tuning recipes do.

A frozen BatchNorm layer is in eval mode, so it normalises with its running mean and variance
and never updates them: ``y = (x - mu_run) / sqrt(var_run + eps) * gamma + beta``. Many DML
recipes fine-tune an ImageNet backbone this way because their batches (for example 16 classes x 5
images) are small and class-skewed; ``affine=True`` also stops the learning of ``gamma`` and
``beta`` (``requires_grad = False``; the optimizer groups of :class:`EmbeddingModel` then leave
them out).

``module.train()`` puts every submodule back in training mode. :class:`EmbeddingModel` with
``frozen_bn=True`` re-freezes its backbone in its own ``train()``, so a trainer calls nothing;
for any other module call :func:`freeze_batchnorm` after each ``train()``.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(module: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm layer in ``module`` (BatchNorm1d/2d/3d, SyncBatchNorm, lazy variants)."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def freeze_batchnorm(module: nn.Module, affine: bool = False) -> int:
    """Put every BatchNorm layer of ``module`` in eval mode (running statistics fixed); with
    ``affine`` also stop the gradients of its weight and bias. Returns the number of layers.

    The layers stay frozen until the next ``module.train()`` (module docstring).
    """
    layers = batchnorm_layers(module)
    for layer in layers:
        layer.eval()
        if affine:
            for param in (layer.weight, layer.bias):
                if param is not None:
                    param.requires_grad_(False)
    return len(layers)
