"""``dmlkit protocol CONFIG``: the Reality-Check protocol (:mod:`dmlkit.protocol`)."""

from __future__ import annotations

import argparse

from dmlkit.protocol.runner import run_protocol
from dmlkit.protocol.settings import load_protocol
from dmlkit.training.rundir import new_run_dir


def run(args: argparse.Namespace) -> int:
    """Run the protocol of CONFIG (an experiment config with a ``protocol`` section) into a new
    folder of ``output.dir``/``output.name`` and print its results table."""
    protocol, config = load_protocol(args.config, args.set)
    out_dir = new_run_dir(config.output)
    print(f"protocol: {protocol.folds} folds x seeds {protocol.seeds} -> {out_dir}")
    run_protocol(protocol, config, out_dir)
    print((out_dir / "results.md").read_text())
    return 0
