"""Start-up cost of the ``dmlkit`` command, this tree against an earlier revision, side by side.

For each source tree (this checkout's ``src`` and ``--before REV`` exported with ``git archive``)
and each command line (``import torch`` alone as the floor, ``dmlkit --help``, ``dmlkit train
--help``, an argument error, ``dmlkit list``), a fresh interpreter runs the command ``--rounds``
times, the trees alternating round by round so that both see the same machine load; the JSON
holds the medians and the ratio after/before. ``python -X importtime -c 'import dmlkit.cli'``
of each tree adds the cumulative import time and which heavy packages the import pulls in.

    python benchmarks/bench_startup.py --before 8b085b3 --rounds 7
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sklearn", "scipy", "matplotlib", "timm", "torchvision", "numpy", "PIL")
COMMANDS = {
    "import torch": ["-c", "import torch"],
    "dmlkit --help": ["-m", "dmlkit.cli", "--help"],
    "dmlkit train --help": ["-m", "dmlkit.cli", "train", "--help"],
    "dmlkit (argument error)": ["-m", "dmlkit.cli", "frobnicate"],
    "dmlkit list": ["-m", "dmlkit.cli", "list"],
}


def export_tree(rev: str, into: Path) -> Path:
    """``src/`` of git revision ``rev`` unpacked under ``into``; returns that ``src``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run_once(src: Path, argv: list[str]) -> float:
    """Wall seconds of ``python <argv>`` with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def import_profile(src: Path) -> dict[str, Any]:
    """Cumulative ``-X importtime`` of ``dmlkit.cli`` (s) and the heavy packages it loads."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import dmlkit.cli"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    cumulative, loaded = 0.0, set()
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        name = parts[2]
        if name == "dmlkit.cli":
            cumulative = int(parts[1]) / 1e6
        top = name.split(".")[0]
        if top in HEAVY:
            loaded.add(top)
    return {"import_dmlkit_cli_s": cumulative, "heavy_packages_loaded": sorted(loaded)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="8b085b3", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": export_tree(args.before, Path(tmp)), "after": ROOT / "src"}
        runs: dict[str, dict[str, list[float]]] = {
            name: {label: [] for label in trees} for name in COMMANDS
        }
        for _ in range(args.rounds):
            for name, argv in COMMANDS.items():
                for label, src in trees.items():
                    runs[name][label].append(run_once(src, argv))
        profiles = {label: import_profile(src) for label, src in trees.items()}
    table = {}
    for name, by_tree in runs.items():
        medians = {label: statistics.median(values) for label, values in by_tree.items()}
        table[name] = {
            **{f"{label}_median_s": m for label, m in medians.items()},
            "ratio_after_before": medians["after"] / medians["before"],
            "runs_s": by_tree,
        }
    path = write_result(
        "startup",
        {
            "what": "wall time of a fresh interpreter per command line, trees alternating",
            "before_revision": args.before,
            "rounds": args.rounds,
            "commands": table,
            "import_profile": profiles,
        },
    )
    for name, row in table.items():
        print(
            f"{name:<26} before {row['before_median_s']:.2f} s  after {row['after_median_s']:.2f} s"
            f"  x{row['ratio_after_before']:.2f}"
        )
    for label, profile in profiles.items():
        print(f"import dmlkit.cli ({label}): {profile}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
