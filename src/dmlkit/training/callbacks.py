"""Dispatch of the trainer's callback hooks; the interface itself (:class:`Callback`,
:class:`BatchEnd`, the hook order) is defined in :mod:`dmlkit.methods.hooks`, next to the methods
that implement it, and re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dmlkit.methods.hooks import BatchEnd, Callback, TrainerView

__all__ = ["BatchEnd", "Callback", "CallbackList"]


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

    def on_train_start(self, trainer: TrainerView) -> None:
        for cb in self.callbacks:
            cb.on_train_start(trainer)

    def on_after_backward(self, trainer: TrainerView) -> None:
        for cb in self.callbacks:
            cb.on_after_backward(trainer)

    def on_batch_end(self, trainer: TrainerView, batch: BatchEnd) -> None:
        for cb in self.callbacks:
            cb.on_batch_end(trainer, batch)

    def on_eval(self, trainer: TrainerView, split: str, metrics: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_eval(trainer, split, metrics)

    def on_train_end(self, trainer: TrainerView, metrics: dict[str, Any]) -> None:
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
