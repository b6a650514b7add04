"""``dmlkit list``: the registered datasets, transforms, models, losses and training methods."""

from __future__ import annotations

import argparse

from dmlkit.data import DATASETS, TRANSFORMS
from dmlkit.losses import LOSSES
from dmlkit.methods import METHODS
from dmlkit.models import MODELS


def run(args: argparse.Namespace) -> int:
    """Print each registry's names on one line."""
    for title, registry in (
        ("datasets", DATASETS),
        ("transforms", TRANSFORMS),
        ("models", MODELS),
        ("losses", LOSSES),
        ("methods", METHODS),
    ):
        print(f"{title}: {', '.join(registry.names())}")
    return 0
