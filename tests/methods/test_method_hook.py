"""Selecting a training method from the config: loss wrapping, callbacks, the after-backward hook,
context arguments, option errors and the own parameter groups of loss submodules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_demo import TINY_DEMO
from torch import Tensor, nn

from dmlkit.config import ConfigError, OptimizerConfig, load_config
from dmlkit.methods import METHODS, Callback, TrainerView, TrainingMethod
from dmlkit.training import Trainer, load_checkpoint
from dmlkit.training.optim import parameter_groups

TINY = [
    *TINY_DEMO,
    "train.steps=4",
    "train.eval_every=2",
    "train.progress=false",
    "eval.metrics=[precision@1, map@r]",
    "eval.ks=[1]",
    "eval.before=false",
    "output.report=false",
    "output.embeddings=false",
]


class Doubled(nn.Module):
    """Twice the wrapped loss, with one learnable scalar of its own."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss
        self.extra = nn.Parameter(torch.zeros(()))

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        value: Tensor = 2.0 * self.loss(emb, labels) + 0.0 * self.extra
        return value


class GradProbe(Callback):
    """Checks that gradients exist and the weights are not yet updated in on_after_backward."""

    def __init__(self) -> None:
        self.calls = 0
        self.before: list[Tensor] = []

    def on_after_backward(self, trainer: TrainerView) -> None:
        weight = next(trainer.model.parameters())
        assert weight.grad is not None
        self.before.append(weight.detach().clone())
        self.calls += 1

    def on_batch_end(self, trainer: TrainerView, batch: Any) -> None:
        assert not torch.equal(next(trainer.model.parameters()), self.before[-1])

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}


class Probe(TrainingMethod):
    def __init__(self, num_classes: int, embedding_dim: int, seed: int, factor: float) -> None:
        self.context = (num_classes, embedding_dim, seed, factor)
        self.probe = GradProbe()

    def wrap_loss(self, loss: nn.Module) -> nn.Module:
        return Doubled(loss)

    def callbacks(self) -> list[Callback]:
        return [self.probe]


@pytest.fixture
def probe_method() -> Iterator[None]:
    METHODS.register("probe_for_tests", context=("num_classes", "embedding_dim", "seed"))(Probe)
    yield
    METHODS._factories.pop("probe_for_tests")


def test_default_method_leaves_the_run_unchanged(tmp_path: Path) -> None:
    config = load_config(None, [*TINY, f"output.dir={tmp_path}"])
    assert config.method.name == "none"
    trainer = Trainer(config, tmp_path / "run")
    assert type(trainer.loss_fn).__name__ == "PairLoss"
    assert trainer.callbacks.callbacks == []


def test_method_wraps_the_loss_adds_callbacks_and_gets_the_context(
    tmp_path: Path, probe_method: None
) -> None:
    config = load_config(
        None,
        [*TINY, "method.name=probe_for_tests", "method.options.factor=3", "seed=7"],
    )
    user = Callback()
    trainer = Trainer(config, tmp_path / "run", callbacks=[user])
    method = trainer.method
    assert isinstance(method, Probe) and isinstance(trainer.loss_fn, Doubled)
    assert method.context == (trainer.splits.train.num_classes, 16, 7, 3.0)
    assert trainer.callbacks.callbacks == [method.probe, user]
    trained = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert any(p is trainer.loss_fn.extra for p in trained)
    trainer.fit()
    assert method.probe.calls == 4
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["callbacks"]["callbacks"][0] == ["GradProbe", {"calls": 4}]
    assert "extra" in saved["loss"]


def test_unknown_method_and_option_are_config_errors(tmp_path: Path, probe_method: None) -> None:
    with pytest.raises(KeyError, match=r"unknown method 'nope'; registered: .*none"):
        Trainer(load_config(None, [*TINY, "method.name=nope"]), tmp_path / "a")
    bad = load_config(None, [*TINY, "method.name=probe_for_tests", "method.options.speed=1"])
    with pytest.raises(ConfigError, match=r"method.options: unknown option\(s\) \['speed'\]"):
        Trainer(bad, tmp_path / "b")


class OwnGroup(nn.Module):
    def __init__(self, lr: float | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3))
        self.lr = lr

    def optimizer_group(self) -> dict[str, Any]:
        return {"name": "own", "params": [self.weight], "lr": self.lr}


class OneGroupModel(nn.Linear):
    def __init__(self) -> None:
        super().__init__(2, 2)

    def param_groups(self, backbone_lr: float, head_lr: float, wd: float) -> list[dict[str, Any]]:
        return [{"name": "head", "params": list(self.parameters()), "lr": head_lr}]


class LossWithParts(nn.Module):
    def __init__(self, lr: float | None) -> None:
        super().__init__()
        self.own = OwnGroup(lr)
        self.beta = nn.Parameter(torch.zeros(2))


@pytest.mark.parametrize(("lr", "expected"), [(None, 0.5), (0.02, 0.02)])
def test_a_submodule_with_optimizer_group_gets_its_own_group(
    lr: float | None, expected: float
) -> None:
    loss = LossWithParts(lr)
    config = OptimizerConfig(lr=0.1, loss_lr=0.5, loss_weight_decay=1e-3)
    groups = {g["name"]: g for g in parameter_groups(config, OneGroupModel(), loss)}
    assert groups["own"]["params"] == [loss.own.weight]
    assert (groups["own"]["lr"], groups["own"]["weight_decay"]) == (expected, 0.0)
    assert groups["loss"]["params"] == [loss.beta] and groups["loss"]["weight_decay"] == 1e-3


def test_dmlkit_list_names_the_methods(capsys: pytest.CaptureFixture[str]) -> None:
    from dmlkit.cli import main

    assert main(["list"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("methods:")]
    assert line and "ccp" in line[0] and "none" in line[0]
