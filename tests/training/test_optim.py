"""Parameter groups, optimizers and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dmlkit.config import OptimizerConfig, ScheduleConfig
from dmlkit.losses import create
from dmlkit.training.optim import LRFactor, build_optimizer, build_scheduler, parameter_groups


class TwoPart(nn.Module):
    """A backbone and a head with the models' ``param_groups`` contract."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)

    def param_groups(
        self, backbone_lr: float, head_lr: float, weight_decay: float
    ) -> list[dict[str, object]]:
        return [
            {"name": "backbone", "params": list(self.backbone.parameters()), "lr": backbone_lr,
             "weight_decay": weight_decay},
            {"name": "head", "params": list(self.head.parameters()), "lr": head_lr,
             "weight_decay": weight_decay},
        ]  # fmt: skip


def test_three_groups_with_their_rates() -> None:
    model, loss = TwoPart(), create("margin", num_classes=5)
    config = OptimizerConfig(lr=0.1, backbone_lr=0.01, loss_lr=0.5, weight_decay=1e-4,
                             loss_weight_decay=0.0)  # fmt: skip
    groups = parameter_groups(config, model, loss)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [
        ("backbone", 0.01, 1e-4),
        ("head", 0.1, 1e-4),
        ("loss", 0.5, 0.0),
    ]
    assert groups[2]["params"][0] is loss.beta
    optimizer = build_optimizer(config, model, loss)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1, 0.5]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 5


def test_unset_rates_default_to_the_head_rate_and_parameterless_losses_add_no_group() -> None:
    groups = parameter_groups(OptimizerConfig(lr=0.3), TwoPart(), create("ms"))
    assert [(g["name"], g["lr"]) for g in groups] == [("backbone", 0.3), ("head", 0.3)]


def test_frozen_loss_parameters_are_left_out() -> None:
    loss = create("margin", num_classes=3, learn_beta=False)
    assert [g["name"] for g in parameter_groups(OptimizerConfig(), TwoPart(), loss)] == [
        "backbone",
        "head",
    ]


@pytest.mark.parametrize(
    ("name", "cls", "check"),
    [
        ("adam", torch.optim.Adam, {"betas": (0.8, 0.9), "eps": 1e-6}),
        ("adamw", torch.optim.AdamW, {"betas": (0.8, 0.9)}),
        ("sgd", torch.optim.SGD, {"momentum": 0.9}),
        ("rmsprop", torch.optim.RMSprop, {"momentum": 0.9, "eps": 1e-6}),
    ],
)
def test_optimizer_kinds(name: str, cls: type, check: dict) -> None:
    config = OptimizerConfig(name=name, momentum=0.9, betas=[0.8, 0.9], eps=1e-6)
    optimizer = build_optimizer(config, TwoPart(), create("ms"))
    assert type(optimizer) is cls
    for key, value in check.items():
        assert optimizer.param_groups[0][key] == value


def test_bad_betas_and_empty_models_are_refused() -> None:
    with pytest.raises(ValueError, match=r"optimizer\.betas: expected two values"):
        build_optimizer(OptimizerConfig(betas=[0.9]), TwoPart(), create("ms"))

    class NoParams(TwoPart):
        def param_groups(self, *args: object) -> list[dict[str, object]]:
            return [{"name": "head", "params": [], "lr": 0.1}]

    with pytest.raises(ValueError, match="no trainable parameters"):
        parameter_groups(OptimizerConfig(), NoParams(), create("ms"))


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (ScheduleConfig(name="constant"), [1, 1, 1, 1, 1, 1, 1, 1]),
        (ScheduleConfig(name="step", step_size=3, gamma=0.5),
         [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]),
        (ScheduleConfig(name="multistep", milestones=[2, 5], gamma=0.1),
         [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]),
        (ScheduleConfig(name="constant", warmup_steps=4), [0.25, 0.5, 0.75, 1, 1, 1, 1, 1]),
        (ScheduleConfig(name="cosine"),
         [(1 + math.cos(math.pi * t / 8)) / 2 for t in range(8)]),
        (ScheduleConfig(name="cosine", min_factor=0.2, warmup_steps=2),
         [0.5 * 1.0, 1.0] + [0.2 + 0.8 * (1 + math.cos(math.pi * (t - 2) / 6)) / 2
                             for t in range(2, 8)]),
    ],
)  # fmt: skip
def test_schedule_factors(config: ScheduleConfig, expected: list[float]) -> None:
    factor = LRFactor(config, total_steps=8)
    assert [factor(t) for t in range(8)] == pytest.approx(expected, abs=1e-12)


def test_scheduler_scales_every_group_per_step() -> None:
    config = OptimizerConfig(lr=0.1, backbone_lr=0.01)
    optimizer = build_optimizer(config, TwoPart(), create("ms"))
    scheduler = build_scheduler(ScheduleConfig(name="step", step_size=2, gamma=0.1), optimizer, 10)
    seen = []
    for _ in range(5):
        seen.extend(g["lr"] for g in optimizer.param_groups)
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.01, 0.1, 0.01, 0.1, 1e-3, 0.01, 1e-3, 0.01, 1e-4, 1e-3])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ScheduleConfig(name="step"), "schedule.step_size: expected a positive int"),
        (ScheduleConfig(name="multistep"), "schedule.milestones: expected step numbers"),
        (ScheduleConfig(name="cosine", min_factor=2.0), "schedule.min_factor: expected in"),
    ],
)
def test_schedule_errors(config: ScheduleConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LRFactor(config, 10)
