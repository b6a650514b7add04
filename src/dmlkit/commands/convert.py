"""``dmlkit convert OLD NEW``: rewrite an old-format checkpoint (dmlkit 0.1) in the current,
data-only format (:func:`dmlkit.training.checkpoint.convert_legacy`)."""

from __future__ import annotations

import argparse

from dmlkit.training.checkpoint import convert_legacy


def run(args: argparse.Namespace) -> int:
    """Convert ``args.old`` to ``args.new`` and say so."""
    print(f"wrote {convert_legacy(args.old, args.new)} (data-only checkpoint)")
    return 0
