"""What a run leaves at its end besides its checkpoints and logs: the test metrics of the final
and of the selected model in ``metrics.json``
(:class:`~dmlkit.training.run_metrics.RunMetrics`) and, with ``output.embeddings``, the selected
model's test embeddings in ``embeddings/test.npz``: ``emb (N, D)`` float32, ``labels (N,)`` int64,
``index (N,)`` int64 and, for a test split of query and gallery items, ``query (N,)`` bool.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from dmlkit.training.run_metrics import RunMetrics
from dmlkit.training.selection import selected_model

if TYPE_CHECKING:
    from dmlkit.training.trainer import Trainer


def save_test_embeddings(
    folder: Path, emb: Tensor, labels: Tensor, query: Tensor | None = None
) -> Path:
    """Write ``folder/test.npz`` (module docstring) from ``emb (N, D)``, ``labels (N,)`` and the
    optional ``query (N,)`` mask; returns its path."""
    folder.mkdir(exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "emb": emb.numpy().astype(np.float32),
        "labels": labels.numpy().astype(np.int64),
        "index": np.arange(len(labels), dtype=np.int64),
    }
    if query is not None:
        arrays["query"] = query.numpy()
    path = folder / "test.npz"
    np.savez(path, allow_pickle=False, **arrays)
    return path


def run_outputs(trainer: Trainer) -> RunMetrics:
    """The run's metrics after its last step (the test metrics of the selected model are those
    of its evaluation, or computed now when test was not evaluated at its step), with the test
    embeddings written on rank 0 when ``output.embeddings`` is on; metrics.json is the caller's
    to write."""
    cfg = trainer.config
    if trainer.last_test is None:
        raise RuntimeError("the run outputs need the final test evaluation of train_until()")
    best_test = trainer.best["test"]
    cached = trainer.test_embeddings
    if cached is not None and cached[0] == trainer.best["step"] == trainer.step:
        emb, labels = cached[1], cached[2]
    elif best_test is None or cfg.output.embeddings:
        emb, labels = trainer.embed("test", selected_model(trainer))
        if best_test is None:
            best_test = trainer.score(emb, labels, "test")
    if cfg.output.embeddings and trainer.dist.is_main:
        save_test_embeddings(
            trainer.run_dir / "embeddings", emb, labels, trainer.query_mask("test")
        )
    total_images = trainer.step * cfg.data.batch_size * trainer.dist.world_size
    return RunMetrics(
        before=trainer.before,
        final=trainer.last_test,
        best=best_test,
        best_step=trainer.best["step"],
        selected_on="test" if cfg.train.select_on_test else "val",
        selection_metric=cfg.eval.select_metric,
        best_selection_value=trainer.best["value"],
        best_val=trainer.best["val"],
        dataset=cfg.data.name,
        ks=list(cfg.eval.ks),
        steps=trainer.step,
        stopped_early=trainer.stopped,
        nonfinite_skipped=trainer.nonfinite_skipped,
        train_time_s=trainer.train_time_s,
        images_per_s=total_images / max(trainer.train_time_s, 1e-9),
    )
