"""Run folders: ``<output.dir>/<output.name>-<YYYYmmdd-HHMMSS>`` and finding the latest one."""

from __future__ import annotations

import time
from pathlib import Path

from dmlkit.config import OutputConfig

LAST_CHECKPOINT = Path("checkpoints") / "last.pt"


def new_run_dir(output: OutputConfig) -> Path:
    """Create and return a fresh run folder; a taken name gets a ``-2``, ``-3``, ... suffix.

    Without ``output.timestamp`` the folder is ``<dir>/<name>`` and must not hold a run yet.
    """
    base = Path(output.dir).expanduser() / output.name
    if not output.timestamp:
        if (base / "config.yaml").exists():
            raise FileExistsError(
                f"run folder {base} already holds a run; resume it with --resume {base}, or "
                "choose another output.name"
            )
        base.mkdir(parents=True, exist_ok=True)
        return base
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = base.with_name(f"{base.name}-{stamp}")
    suffix = 2
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            candidate = base.with_name(f"{base.name}-{stamp}-{suffix}")
            suffix += 1


def latest_run_dir(output: OutputConfig) -> Path:
    """The newest run folder of ``output`` that has a checkpoint to resume from."""
    parent = Path(output.dir).expanduser()
    runs = (
        [parent / output.name] if not output.timestamp else sorted(parent.glob(f"{output.name}-*"))
    )
    runs = [
        r
        for r in runs
        if (r / LAST_CHECKPOINT).exists() or (r / f"{LAST_CHECKPOINT}.prev").exists()
    ]
    if not runs:
        raise FileNotFoundError(
            f"--resume: no run of {output.name!r} with a checkpoint under {parent}; pass the run "
            "folder explicitly (--resume RUN_DIR)"
        )
    return max(runs, key=lambda r: r.stat().st_mtime_ns)
