"""Optimizer with backbone / head / loss parameter groups, and the learning-rate schedules.

Groups: the model's ``param_groups(backbone_lr, head_lr, weight_decay)`` (backbone and embedding
head); one group per submodule of the loss that has an ``optimizer_group()`` method (proxies: it
returns ``{"name", "params"}`` and optionally ``"lr"``, default ``loss_lr``, and
``"weight_decay"``, default 0); and one ``"loss"`` group for the other learnable loss parameters
(margin betas) with ``loss_lr`` and ``loss_weight_decay``. Empty groups are dropped. Every group
carries a ``"name"``.

Schedules give a factor ``f(t)`` for the rate after ``t`` completed steps (``lr_t = lr * f(t)``
in every group), as a :class:`torch.optim.lr_scheduler.LambdaLR` stepped once per optimizer step:

- ``constant``: 1
- ``step``: ``gamma ** floor(t / step_size)``
- ``multistep``: ``gamma ** #{m in milestones : m <= t}``
- ``cosine``: ``min + (1 - min) (1 + cos(pi u)) / 2`` with ``u = (t - w) / (T - w)`` clipped to
  [0, 1], ``T`` total steps, ``w`` warm-up steps
- warm-up (any schedule): times ``(t + 1) / w`` while ``t < w``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import nn

from dmlkit.config import OptimizerConfig, ScheduleConfig


class GroupedModel(Protocol):
    """A model that splits its parameters into optimizer groups (``EmbeddingModel`` does)."""

    def param_groups(
        self, backbone_lr: float, head_lr: float, weight_decay: float
    ) -> list[dict[str, Any]]: ...


def _own_group(module: nn.Module) -> dict[str, Any] | None:
    make = getattr(module, "optimizer_group", None)
    return dict(make()) if callable(make) else None


def parameter_groups(
    config: OptimizerConfig, model: GroupedModel, loss_fn: nn.Module
) -> list[dict[str, Any]]:
    """The optimizer groups (module docstring) for ``model`` and ``loss_fn``."""
    backbone_lr = config.lr if config.backbone_lr is None else config.backbone_lr
    loss_lr = config.lr if config.loss_lr is None else config.loss_lr
    groups = [dict(g) for g in model.param_groups(backbone_lr, config.lr, config.weight_decay)]
    for k, group in enumerate(groups):
        group.setdefault("name", f"group{k}")
    own = [g for g in map(_own_group, loss_fn.modules()) if g is not None]
    taken = {id(p) for group in own for p in group["params"]}
    for group in own:
        group["params"] = [p for p in group["params"] if p.requires_grad]
        group["lr"] = loss_lr if group.get("lr") is None else group["lr"]
        group.setdefault("weight_decay", 0.0)
    groups.extend(own)
    loss_params = [p for p in loss_fn.parameters() if p.requires_grad and id(p) not in taken]
    if loss_params:
        groups.append(
            {
                "name": "loss",
                "params": loss_params,
                "lr": loss_lr,
                "weight_decay": config.loss_weight_decay,
            }
        )
    groups = [g for g in groups if len(list(g["params"]))]
    if not groups:
        raise ValueError("optimizer: the model and the loss have no trainable parameters")
    return groups


def build_optimizer(
    config: OptimizerConfig, model: GroupedModel, loss_fn: nn.Module
) -> torch.optim.Optimizer:
    """``config.name`` over :func:`parameter_groups`."""
    groups = parameter_groups(config, model, loss_fn)
    wd = config.weight_decay
    if config.name in ("adam", "adamw"):
        if len(config.betas) != 2:
            raise ValueError(f"optimizer.betas: expected two values, got {config.betas}")
        cls = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
        return cls(
            groups,
            lr=config.lr,
            betas=(config.betas[0], config.betas[1]),
            eps=config.eps,
            weight_decay=wd,
        )
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=wd)
    if config.name == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=config.lr, momentum=config.momentum, eps=config.eps, weight_decay=wd
        )
    raise ValueError(
        f"optimizer.name: expected one of adam, adamw, sgd, rmsprop, got {config.name!r}"
    )


class LRFactor:
    """The schedule factor ``f(t)`` of the module docstring (picklable, for LambdaLR's state)."""

    def __init__(self, config: ScheduleConfig, total_steps: int) -> None:
        if config.name == "step" and (config.step_size is None or config.step_size < 1):
            raise ValueError(
                f"schedule.step_size: expected a positive int for 'step', got {config.step_size}"
            )
        if config.name == "multistep" and not config.milestones:
            raise ValueError("schedule.milestones: expected step numbers for 'multistep', got []")
        if not 0.0 <= config.min_factor <= 1.0:
            raise ValueError(f"schedule.min_factor: expected in [0, 1], got {config.min_factor}")
        self.name = config.name
        self.warmup = config.warmup_steps
        self.step_size = config.step_size or 1
        self.milestones = sorted(config.milestones)
        self.gamma = config.gamma
        self.min_factor = config.min_factor
        self.total = total_steps

    def __call__(self, t: int) -> float:
        warm = (t + 1) / self.warmup if t < self.warmup else 1.0
        if self.name == "constant":
            base = 1.0
        elif self.name == "step":
            base = self.gamma ** (t // self.step_size)
        elif self.name == "multistep":
            base = self.gamma ** sum(m <= t for m in self.milestones)
        elif self.name == "cosine":
            span = max(self.total - self.warmup, 1)
            u = min(max((t - self.warmup) / span, 0.0), 1.0)
            base = self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * u))
        else:
            raise ValueError(
                f"schedule.name: expected constant, step, multistep or cosine, got {self.name!r}"
            )
        return warm * base


def build_scheduler(
    config: ScheduleConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR applying :class:`LRFactor` to every group."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRFactor(config, total_steps))
