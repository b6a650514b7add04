"""The ``train.nonfinite`` policy: injected NaN gradients and a NaN loss stop or skip the step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_demo import TINY_DEMO

from dmlkit.config import ConfigError, ExperimentConfig, load_config
from dmlkit.training import BatchEnd, Callback, Trainer, load_checkpoint
from dmlkit.training.distributed import DistributedContext
from dmlkit.training.nonfinite import NonFiniteError, nonfinite_what

TINY = [
    *TINY_DEMO,
    "train.steps=5",
    "train.eval_every=0",
    "train.log_every=1",
    "train.progress=false",
    "eval.metrics=[map@r]",
    "eval.ks=[1]",
    "eval.before=false",
    "output.report=false",
]


def tiny(tmp_path: Path, *extra: str) -> ExperimentConfig:
    return load_config(None, [*TINY, f"output.dir={tmp_path}", *extra])


class Injector(Callback):
    """At step ``at``: poisons one gradient after the backward pass (``grad``), or a weight after
    the step before (``weight``, so the loss of step ``at`` is NaN). Records the batches' labels
    and the parameters before and after each step."""

    def __init__(self, at: int, kind: str) -> None:
        self.at, self.kind = at, kind
        self.labels: dict[int, torch.Tensor] = {}
        self.before: dict[int, list[torch.Tensor]] = {}
        self.after: dict[int, list[torch.Tensor]] = {}

    def on_after_backward(self, trainer: Trainer) -> None:
        step = trainer.step + 1
        self.before[step] = [p.detach().clone() for p in trainer.model.parameters()]
        if self.kind == "grad" and step == self.at:
            next(p for p in trainer.model.parameters() if p.grad is not None).grad[0] = torch.nan

    def on_batch_end(self, trainer: Trainer, batch: BatchEnd) -> None:
        self.labels[batch.step] = batch.labels.clone()
        self.after[batch.step] = [p.detach().clone() for p in trainer.model.parameters()]
        if self.kind == "weight" and batch.step == self.at - 1:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(torch.nan)


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_skip_drops_the_update_counts_and_logs_it(tmp_path: Path) -> None:
    injector = Injector(at=3, kind="grad")
    trainer = Trainer(tiny(tmp_path, "train.nonfinite=skip"), tmp_path / "run", [injector])
    with pytest.warns(
        RuntimeWarning, match=r"non-finite gradient \(1 of \d+ parameter tensors\) at step 3"
    ):
        metrics = trainer.fit()
    assert metrics["steps"] == 5 and metrics["nonfinite_skipped"] == 1
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["nonfinite_skipped"] == 1
    for before, after in zip(injector.before[3], injector.after[3], strict=True):
        assert torch.equal(before, after)  # the poisoned step changed nothing
    assert any(
        not torch.equal(b, a) for b, a in zip(injector.before[4], injector.after[4], strict=True)
    )
    (record,) = records(tmp_path / "run", "nonfinite")
    assert (
        record["step"] == 3 and record["policy"] == "skip" and record["what"].startswith("gradient")
    )
    items = torch.tensor(record["items"])
    assert len(items) == 40
    assert torch.equal(trainer.train_labels[items], injector.labels[3])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["nonfinite_skipped"] == 1


def test_stop_on_a_nan_gradient_names_the_step_and_writes_a_checkpoint(tmp_path: Path) -> None:
    injector = Injector(at=3, kind="grad")
    trainer = Trainer(tiny(tmp_path), tmp_path / "run", [injector])
    with pytest.raises(
        NonFiniteError, match=r"non-finite gradient .* at step 3 \(epoch 0, batch 2"
    ) as info:
        trainer.fit()
    assert "training items [" in str(info.value) and "last.pt" in str(info.value)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 2 and state["batch_in_epoch"] == 2
    (record,) = records(tmp_path / "run", "nonfinite")
    assert record["policy"] == "stop" and record["step"] == 3
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_nan_embeddings_stop_under_either_policy(tmp_path: Path) -> None:
    policy = "train.nonfinite=skip"
    trainer = Trainer(tiny(tmp_path, policy), tmp_path / "run", [Injector(at=2, kind="weight")])
    with pytest.raises(
        NonFiniteError, match=r"non-finite model output at step 2 \(epoch 0, batch 1"
    ):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 1


def test_a_non_finite_output_on_another_rank_stops_this_one_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer stops on the flag of any rank (``ranks_where``), not only on its own output:
    here the local output stays finite and another rank reports a NaN at step 3."""
    trainer = Trainer(tiny(tmp_path), tmp_path / "run")
    original = DistributedContext.ranks_where

    def ranks_where(self: DistributedContext, flag: bool, device: torch.device) -> list[int]:
        assert not flag  # the local output is finite
        return [1] if trainer.step == 2 else original(self, flag, device)

    monkeypatch.setattr(DistributedContext, "ranks_where", ranks_where)
    with pytest.raises(NonFiniteError, match=r"non-finite model output at step 3"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


def test_nonfinite_what() -> None:
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    assert nonfinite_what(torch.tensor(1.0), [a, b]) is None  # no gradients yet
    a.grad, b.grad = torch.ones(3), torch.tensor([1.0, torch.inf])
    assert nonfinite_what(torch.tensor(1.0), [a, b]) == "gradient (1 of 2 parameter tensors)"
    assert nonfinite_what(torch.tensor(1.0), [a, b], check_gradients=False) is None
    assert nonfinite_what(torch.tensor(torch.nan), [a]) == "loss"


def test_policy_is_a_checked_choice(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"train.nonfinite: expected one of stop, skip, got 'ignore'"
    ):
        tiny(tmp_path, "train.nonfinite=ignore")


class NaNAtCall(torch.nn.Module):
    """The wrapped loss, times NaN at its ``at``-th call (1-based)."""

    def __init__(self, inner: torch.nn.Module, at: int) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = self.inner(emb, labels)
        return loss * torch.nan if self.calls == self.at else loss


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_nan_loss_triggers_the_policy(tmp_path: Path, policy: str) -> None:
    trainer = Trainer(tiny(tmp_path, f"train.nonfinite={policy}"), tmp_path / "run")
    trainer.loss_fn = NaNAtCall(trainer.loss_fn, at=4)
    if policy == "stop":
        with pytest.raises(NonFiniteError, match=r"non-finite loss at step 4 \(epoch 0, batch 3"):
            trainer.fit()
        assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3
    else:
        with pytest.warns(RuntimeWarning, match="non-finite loss at step 4"):
            metrics = trainer.fit()
        assert metrics["nonfinite_skipped"] == 1 and metrics["steps"] == 5
        (train4,) = [r for r in records(tmp_path / "run", "train") if r["step"] == 4]
        assert train4["loss"] == "nan"  # the skipped step's loss is logged as it was
    (record,) = records(tmp_path / "run", "nonfinite")
    assert record == {**record, "step": 4, "what": "loss", "policy": policy}
