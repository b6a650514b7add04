"""The callback interface through which training methods (CCP rounds, sharing, memory) plug in.

The trainer calls, in this order::

    on_train_start(trainer)                      once, after a fresh start or a resume
    on_batch_end(trainer, batch)                 after every optimizer step
    on_eval(trainer, split, metrics)             after each evaluation of "val" or "test"
    on_train_end(trainer, metrics)               once, with the content of metrics.json

Callbacks see the whole trainer (``trainer.model``, ``trainer.loss_fn``, ``trainer.optimizer``,
``trainer.step``, ...). State that must survive a resume goes through ``state_dict`` and
``load_state_dict``; it is stored in every checkpoint, keyed by position and class name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from dmlkit.training.trainer import Trainer


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

    def on_train_start(self, trainer: Trainer) -> None:
        """Called once before the first step (also when resuming)."""

    def on_batch_end(self, trainer: Trainer, batch: BatchEnd) -> None:
        """Called after every optimizer step."""

    def on_eval(self, trainer: Trainer, split: str, metrics: dict[str, float]) -> None:
        """Called after evaluating ``split`` ("val" or "test") with its metrics."""

    def on_train_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Called once at the end with the content of metrics.json."""

    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class CallbackList(Callback):
    """Dispatch every hook to ``callbacks`` in order; states are saved as a list."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"callbacks: expected dmlkit.training.Callback instances, got "
                    f"{type(cb).__name__}"
                )
        self.callbacks = list(callbacks)

    def on_train_start(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_train_start(trainer)

    def on_batch_end(self, trainer: Trainer, batch: BatchEnd) -> None:
        for cb in self.callbacks:
            cb.on_batch_end(trainer, batch)

    def on_eval(self, trainer: Trainer, split: str, metrics: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_eval(trainer, split, metrics)

    def on_train_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(trainer, metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"callbacks": [[type(cb).__name__, cb.state_dict()] for cb in self.callbacks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["callbacks"]
        names = [type(cb).__name__ for cb in self.callbacks]
        if [name for name, _ in saved] != names:
            raise ValueError(
                f"callback state: saved for {[name for name, _ in saved]}, this run has {names}"
            )
        for cb, (_, cb_state) in zip(self.callbacks, saved, strict=True):
            cb.load_state_dict(cb_state)
