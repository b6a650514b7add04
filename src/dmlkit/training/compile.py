"""The training step's speed settings: ``train.channels_last`` and ``train.compile``.

:func:`use_channels_last` and :func:`compile_step` turn the run's model into the module the
training forward runs through:

- **channels-last** (models with 2-D convolutions): the parameters are converted in place to the
  channels-last layout and every 4-D input batch on the way in (:class:`ChannelsLastInput`), the
  layout oneDNN (CPU) and cuDNN tensor cores (GPU) convolve fastest. Default: on for CNNs
  compiled on a GPU; ``true`` turns it on anywhere (on one CPU thread the glyph CNN trains about
  1.6x faster in eager mode, ``benchmarks/results/compile.json``), ``false`` off.
- **torch.compile** (inductor) of that module: forward and backward fused into generated kernels
  (C++ on the CPU, which needs a compiler; Triton on the GPU). The first steps pay the
  compilation (seconds to minutes); every later step of the same batch shape reuses it.

The loss stays eager: the pair engine's input checks and mining read values on the host (graph
breaks), and compiling it too was measured no faster (``compile.json``). Evaluation runs the
model itself, eagerly; parameters are shared and state-dict keys are the model's, so
checkpoints do not depend on the settings. Results equal eager training within floating-point
tolerance (tested on a small CNN).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn


def has_convolutions(model: nn.Module) -> bool:
    """Whether ``model`` contains a 2-D convolution (a CNN backbone)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


class ChannelsLastInput(nn.Module):
    """``module(x)`` with a 4-D ``x`` converted to ``torch.channels_last`` first (other inputs
    as they come). ``x (B, C, H, W)``; the values are unchanged, only the memory layout."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module(x)


def use_channels_last(
    model: nn.Module, setting: bool | None, compile: bool, device: torch.device
) -> bool:
    """Whether the run trains channels-last (``train.channels_last``): ``None`` (default) for a
    model with convolutions compiled on a GPU, ``True``/``False`` as set; ``True`` needs
    convolutions (``ValueError`` otherwise)."""
    convolutional = has_convolutions(model)
    if setting is None:
        return convolutional and compile and device.type == "cuda"
    if setting and not convolutional:
        raise ValueError(
            f"train.channels_last: expected a model with 2-D convolutions, got "
            f"{type(model).__name__} without any (set it to false or null)"
        )
    return setting


def compile_step(module: nn.Module, compile: bool, channels_last: bool) -> nn.Module:
    """The module a training forward runs through: ``module`` (the model, or its DDP wrapper),
    with channels-last inputs when ``channels_last`` (the model converted in place before any
    DDP wrapper was made, so that its gradient buckets take that layout), through
    ``torch.compile`` when ``compile``."""
    step = ChannelsLastInput(module) if channels_last else module
    # torch.compile of a module returns a module (an OptimizedModule sharing its parameters)
    return cast(nn.Module, torch.compile(step)) if compile else step
