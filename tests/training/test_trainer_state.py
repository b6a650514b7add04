"""What ``last.pt`` and ``best.pt`` hold (the state capture of :mod:`dmlkit.training.checkpoint`)
and how :func:`~dmlkit.training.checkpoint.restore_last` puts it back."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_demo import TINY_DEMO

from dmlkit.config import load_config
from dmlkit.training import Trainer, load_checkpoint
from dmlkit.training.checkpoint import PROGRESS, STATEFUL, restore_last, save_checkpoint

TINY = [
    *TINY_DEMO,
    "train.steps=4",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.progress=false",
    "eval.metrics=[map@r]",
    "eval.ks=[1]",
    "eval.before=false",
    "output.report=false",
    "output.embeddings=false",
]
# Written out by hand: the keys of last.pt before its capture became a table.
LAST_KEYS = {
    "kind", "config", "step", "epoch", "batch_in_epoch", "model", "loss", "optimizer",
    "scheduler", "scaler", "sampler", "rng", "callbacks", "before", "best", "last_test",
    "stale_evals", "nonfinite_skipped", "stopped", "train_time_s", "log_position",
}  # fmt: skip


def test_last_and_best_checkpoints_hold_the_run_state(tmp_path: Path) -> None:
    config = load_config(None, [*TINY, f"output.dir={tmp_path}"])
    trainer = Trainer(config, tmp_path / "run")
    trainer.fit()
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert set(last) == LAST_KEYS
    assert last["kind"] == "last" and last["step"] == 4 and last["epoch"] == trainer.epoch
    for name in PROGRESS:
        assert last[name] == getattr(trainer, name), name
    for key, name in STATEFUL.items():
        assert last[key].keys() == getattr(trainer, name).state_dict().keys(), key
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(last["model"][key], value), key
    assert last["sampler"]["epoch"] == trainer.epoch
    assert last["sampler"]["position"] == trainer.batch_in_epoch
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["kind"] == "best" and best["step"] == trainer.best["step"]
    assert best["selection"] == {k: v for k, v in trainer.best.items() if k != "test"}

    fresh = Trainer(config, tmp_path / "other")
    position = restore_last(fresh, tmp_path / "run" / "checkpoints" / "last.pt")
    assert position == last["log_position"]
    for name in PROGRESS:
        assert getattr(fresh, name) == getattr(trainer, name), name
    for a, b in zip(fresh.model.parameters(), trainer.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_without_the_later_progress_field_reads_its_default(tmp_path: Path) -> None:
    config = load_config(None, [*TINY, f"output.dir={tmp_path}"])
    Trainer(config, tmp_path / "run").fit()
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    del state["nonfinite_skipped"]  # what a checkpoint of a version before the policy lacks
    save_checkpoint(state, path, keep_previous=False)
    fresh = Trainer(config, tmp_path / "other")
    fresh.nonfinite_skipped = 7
    restore_last(fresh, path)
    assert fresh.nonfinite_skipped == 0 and fresh.step == 4
