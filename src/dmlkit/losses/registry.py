"""The loss and miner registries: ``create("ms", **kwargs)`` builds any registered loss by name,
``MINERS.create("pair_margin", **kwargs)`` any pair miner (for losses that take ``miner=``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from dmlkit.core.registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")
MINERS: Registry[nn.Module] = Registry("miner")


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name``; see ``LOSSES.names()`` for the list."""
    return LOSSES.create(name, **kwargs)
