"""The trainer on a tiny digits run: run folder contract, callback order, exact resume, selection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_demo import TINY_DEMO

from dmlkit.config import ConfigError, ExperimentConfig, load_config
from dmlkit.training import BatchEnd, Callback, Trainer, load_checkpoint

TINY = [
    *TINY_DEMO,
    "train.steps=12",
    "train.eval_every=4",
    "train.checkpoint_every=4",
    "train.log_every=2",
    "train.progress=false",
    "eval.metrics=[recall, precision@1, map@r, nmi]",
    "eval.ks=[1, 2]",
    "output.report=false",
]


def tiny(tmp_path: Path, *extra: str) -> ExperimentConfig:
    return load_config(None, [*TINY, f"output.dir={tmp_path}", *extra])


class Recorder(Callback):
    """Records every hook call; its state is the number of batches it saw."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.events: list[str] = []
        self.batches = 0
        self.fail_at = fail_at

    def on_train_start(self, trainer: Trainer) -> None:
        self.events.append(f"start@{trainer.step}")

    def on_batch_end(self, trainer: Trainer, batch: BatchEnd) -> None:
        self.batches += 1
        self.events.append(f"batch{batch.step}")
        assert batch.embeddings.shape == (40, 16) and not batch.embeddings.requires_grad
        assert batch.loss.ndim == 0 and batch.labels.shape == (40,)
        if batch.step == self.fail_at:
            raise KeyboardInterrupt

    def on_eval(self, trainer: Trainer, split: str, metrics: dict[str, float]) -> None:
        self.events.append(f"eval:{split}@{trainer.step}")

    def on_train_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self.events.append(f"end@{metrics['steps']}")

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = state["batches"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, Recorder, dict]:
    tmp = tmp_path_factory.mktemp("run")
    recorder = Recorder()
    trainer = Trainer(tiny(tmp), tmp / "run", callbacks=[recorder])
    metrics = trainer.fit()
    return trainer, recorder, metrics


def test_callbacks_are_called_in_order(finished: tuple[Trainer, Recorder, dict]) -> None:
    _, recorder, _ = finished
    expected = ["start@0", "eval:test@0"]
    for step in range(1, 13):
        expected.append(f"batch{step}")
        if step % 4 == 0:
            expected += [f"eval:val@{step}", f"eval:test@{step}"]
    expected.append("end@12")
    assert recorder.events == expected


def test_run_folder_follows_the_contract(finished: tuple[Trainer, Recorder, dict]) -> None:
    trainer, _, metrics = finished
    run = trainer.run_dir
    assert load_config(run / "config.yaml") == trainer.config
    assert trainer.config.model.in_channels == 1  # resolved from the data
    assert trainer.config.data.batches_per_epoch == len(trainer.sampler)

    saved = json.loads((run / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["selected_on"] == "val" and saved["dataset"] == "digits"
    assert saved["ks"] == [1, 2] and saved["steps"] == 12
    assert saved["best_step"] in (4, 8, 12)
    for key in ("before", "final", "best"):
        assert set(saved[key]) == set(trainer.columns)
        assert all(0.0 <= saved[key][m] <= 1.0 for m in ("recall@1", "map@r", "nmi"))

    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12]
    assert set(train[0]) == {"kind", "step", "epoch", "loss", "lr", "images_per_s"}
    assert [(r["split"], r["step"]) for r in evals] == [("test", 0)] + [
        (split, s) for s in (4, 8, 12) for split in ("val", "test")
    ]
    final_eval = evals[-1]
    assert {k: final_eval[k] for k in trainer.columns} == saved["final"]
    best_val = next(r for r in evals if r["split"] == "val" and r["step"] == saved["best_step"])
    assert best_val["map@r"] == saved["best_selection_value"]
    assert max(r["map@r"] for r in evals if r["split"] == "val") == best_val["map@r"]
    best_test = next(r for r in evals if r["split"] == "test" and r["step"] == saved["best_step"])
    assert {k: best_test[k] for k in trainer.columns} == saved["best"]
    assert (run / "log.csv").read_text().count("\n") == 1 + len(records)

    with np.load(run / "embeddings" / "test.npz") as npz:
        assert npz["emb"].dtype == np.float32 and npz["emb"].shape == (len(trainer.splits.test), 16)
        assert npz["labels"].dtype == np.int64
        assert np.array_equal(npz["labels"], trainer.splits.test.labels)
        assert np.array_equal(npz["index"], np.arange(len(trainer.splits.test)))

    last = load_checkpoint(run / "checkpoints" / "last.pt")
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert last["step"] == 12 and best["step"] == saved["best_step"]
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(last["model"][name], value)


def test_interrupted_run_resumes_exactly(tmp_path: Path) -> None:
    config = tiny(tmp_path)
    full = Trainer(config, tmp_path / "full", callbacks=[Recorder()]).fit()

    crashing = Trainer(config, tmp_path / "cut", callbacks=[Recorder(fail_at=6)])
    with pytest.raises(KeyboardInterrupt):
        crashing.fit()
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 4

    recorder = Recorder()
    resumed_trainer = Trainer(config, tmp_path / "cut", callbacks=[recorder], resume=True)
    resumed = resumed_trainer.fit()
    assert recorder.events[0] == "start@4" and recorder.batches == 12
    for key in ("before", "final", "best", "best_step", "best_val", "best_selection_value"):
        assert resumed[key] == full[key], key

    def without_timing(path: Path) -> list[dict]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]

    assert without_timing(tmp_path / "cut" / "log.jsonl") == without_timing(
        tmp_path / "full" / "log.jsonl"
    )
    last_full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    last_cut = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    for name, value in last_full["model"].items():
        assert torch.equal(last_cut["model"][name], value), name


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    Trainer(tiny(tmp_path, "train.steps=4"), tmp_path / "run").fit()
    other = tiny(tmp_path, "train.steps=4", "optimizer.lr=0.5", "output.name=x")
    with pytest.raises(ValueError, match=r"config differs.*\n  optimizer.lr: 0.001 != 0.5$"):
        Trainer(other, tmp_path / "run", resume=True).fit()


def test_selection_needs_a_validation_split_or_the_explicit_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.select_on_test: true"):
        Trainer(tiny(tmp_path, "data.options.val_fraction=0.0"), tmp_path / "a")
    trainer = Trainer(
        tiny(tmp_path, "data.options.val_fraction=0.0", "train.select_on_test=true"),
        tmp_path / "b",
    )
    assert trainer.splits.val is None
    metrics = trainer.fit()
    assert metrics["selected_on"] == "test" and metrics["best_val"] is None
    assert metrics["best"]["map@r"] == metrics["best_selection_value"]
    assert metrics["best"]["map@r"] >= metrics["final"]["map@r"]


def test_unknown_selection_metric_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"eval\.select_metric: 'mrr' is not reported"):
        Trainer(tiny(tmp_path, "eval.select_metric=mrr"), tmp_path / "a")


def test_unknown_loss_option_lists_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['gamma'\] for loss 'ms'"):
        Trainer(tiny(tmp_path, "loss.options.gamma=1"), tmp_path / "a")


class GradNorm(Callback):
    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_batch_end(self, trainer: Trainer, batch: BatchEnd) -> None:
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def test_gradient_clipping_bounds_the_global_norm(tmp_path: Path) -> None:
    free, clipped = GradNorm(), GradNorm()
    steps = ["train.steps=3", "train.eval_every=0", "eval.before=false"]
    Trainer(tiny(tmp_path, *steps), tmp_path / "a", callbacks=[free]).fit()
    config = tiny(tmp_path, *steps, "optimizer.clip_grad_norm=0.001")
    Trainer(config, tmp_path / "b", callbacks=[clipped]).fit()
    assert min(free.norms) > 0.001
    assert max(clipped.norms) == pytest.approx(0.001, rel=1e-4)


def test_margin_loss_betas_get_their_own_group_and_learn(tmp_path: Path) -> None:
    config = tiny(
        tmp_path, "loss.name=margin", "loss.options={}", "optimizer.loss_lr=0.05",
        "train.steps=3", "train.eval_every=0", "eval.before=false",
    )  # fmt: skip
    trainer = Trainer(config, tmp_path / "a")
    assert trainer.loss_fn.beta.shape == (trainer.splits.train.num_classes,)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["loss"]["lr"] == pytest.approx(0.05)
    before = trainer.loss_fn.beta.detach().clone()
    trainer.fit()
    assert not torch.equal(before, trainer.loss_fn.beta.detach())


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains(tmp_path: Path, amp: str) -> None:
    config = tiny(tmp_path, f"train.amp={amp}", "train.steps=2", "train.eval_every=0",
                  "eval.before=false")  # fmt: skip
    trainer = Trainer(config, tmp_path / amp)
    metrics = trainer.fit()
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    assert np.isfinite(metrics["final"]["map@r"])
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_patience_stops_after_evaluations_without_improvement(tmp_path: Path) -> None:
    # the rate drops to 0 after the first step and BatchNorm is frozen: nothing changes after it
    config = tiny(
        tmp_path, "schedule.name=multistep", "schedule.milestones=[1]", "schedule.gamma=0.0",
        "model.frozen_bn=true", "train.patience=2", "train.steps=40", "eval.periodic_test=false",
    )  # fmt: skip
    recorder = Recorder()
    metrics = Trainer(config, tmp_path / "run", callbacks=[recorder]).fit()
    assert metrics["stopped_early"] and metrics["steps"] == 12 and metrics["best_step"] == 4
    assert [e for e in recorder.events if e.startswith("eval")] == [
        "eval:test@0", "eval:val@4", "eval:val@8", "eval:val@12", "eval:test@12",
    ]  # fmt: skip
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 12
    again = Trainer(config, tmp_path / "run", callbacks=[Recorder()], resume=True).fit()
    assert again["steps"] == 12 and again["final"] == metrics["final"]


def test_dataset_problems_are_found_before_training(tmp_path: Path) -> None:
    classes = ["data.options={holdout: classes, test_fraction: 0.5}"]
    config = tiny(tmp_path, *classes, "data.val_classes=1", "data.batch_size=24", "data.m=4")
    with pytest.raises(
        ValueError, match=r"dataset check found 1 problem\(s\):\n- train: 4 class"
    ) as err:
        Trainer(config, tmp_path / "run")
    assert "a batch draws 6 classes" in str(err.value)
    assert not (tmp_path / "run").exists()
