"""Model selection inside a run: the best model so far, early stopping, the selected model.

At every periodic evaluation (:func:`evaluate_and_select`) the trainer scores the selection split
(``val``; ``test`` with ``train.select_on_test``) and reads ``eval.select_metric`` (higher is
better). An improvement makes the current model the selected one: ``trainer.best`` becomes
``{"step", "value", "val", "test"}`` (the metrics of the selection split, and of test when it is
evaluated at that step) and rank 0 writes ``best.pt``
(:func:`~dmlkit.training.checkpoint.best_state`). Evaluations without improvement are counted;
``train.patience`` of them stop the run. Test is evaluated at every evaluation with
``eval.periodic_test``, else at the last one (the end of the run or the stop).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from torch import nn

from dmlkit.training.checkpoint import best_state, load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from dmlkit.training.trainer import Trainer


def evaluate_and_select(trainer: Trainer, final: bool) -> None:
    """Evaluate the selection split, keep the best model, count evaluations without improvement
    (``trainer.stopped`` once ``train.patience`` is reached) and evaluate test when due
    (periodic, ``final`` or stopping); ``trainer.last_test`` holds the latest test metrics."""
    cfg = trainer.config
    selected_on = "test" if cfg.train.select_on_test else "val"
    metrics = trainer.evaluate(selected_on)
    value = metrics[cfg.eval.select_metric]
    improved = trainer.best["value"] is None or value > trainer.best["value"]
    if improved:
        trainer.best = {"step": trainer.step, "value": value, "val": None, "test": None}
        trainer.best[selected_on] = metrics
        if trainer.dist.is_main:
            save_checkpoint(best_state(trainer), trainer.run_dir / "checkpoints" / "best.pt")
    trainer.stale_evals = 0 if improved else trainer.stale_evals + 1
    patience = cfg.train.patience
    trainer.stopped = patience is not None and trainer.stale_evals >= patience
    if selected_on == "test":
        trainer.last_test = metrics
    elif cfg.eval.periodic_test or final or trainer.stopped:
        trainer.last_test = trainer.evaluate("test")
        if improved:
            trainer.best["test"] = trainer.last_test


def selected_model(trainer: Trainer) -> nn.Module:
    """The selected model: the trainer's own when the last evaluated step is the best, else a
    copy with the weights of ``best.pt`` (read on rank 0, broadcast to every rank)."""
    if trainer.best["step"] == trainer.step:
        return trainer.model
    model = copy.deepcopy(trainer.model)
    if trainer.dist.is_main:
        state = load_checkpoint(trainer.run_dir / "checkpoints" / "best.pt")
        model.load_state_dict(state["model"])
    trainer.dist.broadcast_module(model)
    return model
