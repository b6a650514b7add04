"""``dmlkit list``: the registered datasets, transforms, models, losses, miners, regularizers and
training methods.

Losses, pair miners and regularizers are listed one per line, grouped by family, each with the paper or code it
follows.
"""

from __future__ import annotations

import argparse
from itertools import groupby
from typing import Any

from dmlkit.core import Registry
from dmlkit.data import DATASETS, TRANSFORMS
from dmlkit.losses import LOSSES, MINERS, REGULARIZERS
from dmlkit.methods import METHODS
from dmlkit.models import MODELS


def family_lines(registry: Registry[Any]) -> list[str]:
    """``registry``'s entries grouped by family: a ``family:`` header, then ``  name  source``."""
    entries = sorted(registry.names(), key=lambda n: (registry.info(n).family, n))
    width = max(map(len, entries), default=0)
    lines: list[str] = []
    for family, names in groupby(entries, key=lambda n: registry.info(n).family):
        lines.append(f"  {family or 'other'}:")
        lines.extend(f"    {n:<{width}}  {registry.info(n).source}".rstrip() for n in names)
    return lines


def run(args: argparse.Namespace) -> int:
    """Print each registry's names on one line, and the losses and miners by family with their
    sources."""
    for title, registry in (
        ("datasets", DATASETS),
        ("transforms", TRANSFORMS),
        ("models", MODELS),
        ("methods", METHODS),
    ):
        print(f"{title}: {', '.join(registry.names())}")
    print("losses:")
    print("\n".join(family_lines(LOSSES)))
    print("miners (loss.miner, for losses that take miner=):")
    print("\n".join(family_lines(MINERS)))
    print("regularizers (loss.regularizers, added to any loss):")
    print("\n".join(family_lines(REGULARIZERS)))
    return 0
