"""The method-level iteration, evaluated views and log fields of a training method."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from dmlkit.config import load_config
from dmlkit.methods import METHODS, TrainerView, TrainingMethod
from dmlkit.training import Trainer
from dmlkit.training.evaluate import score

TINY = [
    "data.image_size=8",
    "data.options.test_fraction=0.3",
    "model.options.widths=[8, 16]",
    "data.batch_size=40",
    "model.embedding_dim=16",
    "train.steps=3",
    "train.log_every=1",
    "train.progress=false",
    "eval.metrics=[precision@1, map@r]",
    "eval.ks=[1]",
    "eval.before=false",
    "output.report=false",
    "output.embeddings=false",
    "method.name=halves_for_tests",
]


class Halves(TrainingMethod):
    """Two optimizer steps per iteration (one per half batch); scores the first 8 dimensions,
    reports the last 8 as the view "tail"."""

    def __init__(self) -> None:
        self.steps = 0

    def train_step(
        self, trainer: TrainerView, images: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        half = len(labels) // 2
        for part in (slice(0, half), slice(half, None)):
            loss = trainer.loss_fn(trainer.forward(images[part]), labels[part])
            trainer.optimizer_step(loss)
            self.steps += 1
        return loss.detach(), trainer.forward(images).detach()

    def eval_views(self, emb: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return emb[:, :8], {"tail": emb[:, 8:]}

    def log_fields(self) -> dict[str, float]:
        return {"optimizer_steps": float(self.steps)}


@pytest.fixture
def halves() -> Iterator[None]:
    METHODS.register("halves_for_tests")(Halves)
    yield
    METHODS._factories.pop("halves_for_tests")


def test_method_iteration_views_and_log_fields(tmp_path: Path, halves: None) -> None:
    trainer = Trainer(load_config(None, [*TINY, f"output.dir={tmp_path}"]), tmp_path / "run")
    metrics = trainer.fit()
    assert trainer.method.steps == 6  # two optimizer steps in each of 3 iterations
    assert trainer.scheduler.last_epoch == 3  # the schedule steps once per iteration
    emb, labels = trainer.embed("test")
    head = score(emb[:, :8], labels, trainer.config.eval, trainer.config.seed)
    tail = score(emb[:, 8:], labels, trainer.config.eval, trainer.config.seed)
    assert metrics["final"]["map@r"] == pytest.approx(head["map@r"])
    assert metrics["final"]["tail/map@r"] == pytest.approx(tail["map@r"])
    assert "tail/num_queries" not in metrics["final"]
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").open()]
    assert [r["optimizer_steps"] for r in records if r["kind"] == "train"] == [2.0, 4.0, 6.0]


def test_default_iteration_is_one_optimizer_step(tmp_path: Path) -> None:
    config = load_config(None, [*TINY[:-1], f"output.dir={tmp_path}"])
    trainer = Trainer(config, tmp_path / "run")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.start()
    images, labels = next(iter(trainer.loader))
    loss, emb, _ = trainer.train_step(images, labels)
    trainer.close()
    assert loss.ndim == 0 and emb.shape == (40, 16) and not emb.requires_grad
    assert trainer.scheduler.last_epoch == 1
    assert any(
        not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)
    )
