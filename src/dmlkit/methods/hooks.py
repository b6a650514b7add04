"""The callback interface through which training methods (CCP rounds, sharing, memory) plug into
the trainer, and the view of the trainer that a callback may use.

The trainer calls, in this order::

    on_train_start(trainer)                      once, after a fresh start or a resume
    on_after_backward(trainer)                   every step, after backward, before clipping
                                                 and the optimizer step
    on_batch_end(trainer, batch)                 after every optimizer step
    on_eval(trainer, split, metrics)             after each evaluation of "val" or "test"
    on_train_end(trainer, metrics)               once, with the content of metrics.json

The interface lives in the methods layer so that a method can implement its callbacks next to its
losses; :mod:`dmlkit.training` runs them. Callbacks see the trainer through :class:`TrainerView`
(``dmlkit.training.Trainer`` satisfies it). State that must survive a resume goes through
``state_dict`` and ``load_state_dict``; it is stored in every checkpoint, keyed by position and
class name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler


class TrainerView(Protocol):
    """What a callback may read and change in the running trainer.

    Gradients seen in ``on_after_backward`` are multiplied by ``scaler.get_scale()`` (1 unless
    ``train.amp`` is ``fp16``); a gradient a callback adds must be multiplied by it too.
    """

    @property
    def model(self) -> nn.Module: ...

    @property
    def loss_fn(self) -> nn.Module: ...

    @property
    def optimizer(self) -> torch.optim.Optimizer: ...

    @property
    def scaler(self) -> torch.amp.GradScaler: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def step(self) -> int: ...

    @property
    def train_labels(self) -> Tensor:
        """``(N,)`` int64 class ids of the training items, on the CPU."""
        ...

    def embed_train_items(self, indices: Sequence[int]) -> Tensor:
        """``(n, D)`` float32 CPU embeddings of training items ``indices`` (training transform,
        current model in eval mode, no gradient)."""
        ...

    def forward(self, images: Tensor) -> Tensor:
        """``(B, D)`` float32 embeddings of a training batch (moved to the device, autocast)."""
        ...

    def gather(self, emb: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The global batch: ``emb (B, D)`` and ``labels (B,)`` of every rank concatenated in
        rank order, ``(W B, D)`` and ``(W B,)``; in one process ``emb`` and ``labels``."""
        ...

    def optimizer_step(self, loss: Tensor) -> None:
        """One optimizer update on ``loss``: zero the gradients, scaled backward,
        ``on_after_backward``, optional clipping, optimizer and scaler step (no schedule step)."""
        ...

    def train_loader(self, batch_sampler: Sampler[list[int]]) -> DataLoader:
        """A loader of ``(images, labels)`` batches of the training set drawn by
        ``batch_sampler``, with the run's workers (a method's own batches)."""
        ...


@dataclass
class BatchEnd:
    """One finished optimizer step: ``loss`` 0-dim (detached), ``embeddings (B, D)`` detached,
    ``labels (B,)``, on the training device."""

    step: int
    epoch: int
    loss: Tensor
    embeddings: Tensor
    labels: Tensor


class Callback:
    """Base class: every hook does nothing; override the ones a method needs."""

    def on_train_start(self, trainer: TrainerView) -> None:
        """Called once before the first step (also when resuming)."""

    def on_after_backward(self, trainer: TrainerView) -> None:
        """Called every step after the backward pass, before clipping and the optimizer step:
        the place to add to or change gradients (see :class:`TrainerView` for AMP scaling)."""

    def on_batch_end(self, trainer: TrainerView, batch: BatchEnd) -> None:
        """Called after every optimizer step."""

    def on_eval(self, trainer: TrainerView, split: str, metrics: dict[str, float]) -> None:
        """Called after evaluating ``split`` ("val" or "test") with its metrics."""

    def on_train_end(self, trainer: TrainerView, metrics: dict[str, Any]) -> None:
        """Called once at the end with the content of metrics.json."""

    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
