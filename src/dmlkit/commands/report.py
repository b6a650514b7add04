"""``dmlkit report RUN_DIR``: build the HTML report of a finished run."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    """Build the report of ``args.run_dir`` and print where it is."""
    from dmlkit.reporting import build_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "metrics.json").is_file():
        raise FileNotFoundError(f"{run_dir}: expected a finished run folder with metrics.json")
    print(f"report: {build_report(run_dir)}")
    return 0
