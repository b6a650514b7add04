"""Run folders: ``<output.dir>/<output.name>-<YYYYmmdd-HHMMSS>`` and finding the latest one."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dmlkit.config import OutputConfig

LAST_CHECKPOINT = Path("checkpoints") / "last.pt"


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a ``last.pt`` (or the ``last.pt.prev`` it replaced)."""
    return any((run_dir / name).exists() for name in (LAST_CHECKPOINT, f"{LAST_CHECKPOINT}.prev"))


def new_run_dir(output: OutputConfig) -> Path:
    """Create and return a fresh run folder; a taken name gets a ``-2``, ``-3``, ... suffix.

    Without ``output.timestamp`` the folder is ``<dir>/<name>``; it must not hold a run with a
    checkpoint yet (one that stopped before its first checkpoint is started over, with a notice).
    """
    base = Path(output.dir).expanduser() / output.name
    if not output.timestamp:
        if has_checkpoint(base):
            raise FileExistsError(
                f"run folder {base} already holds a run; resume it with --resume {base}, or "
                "choose another output.name"
            )
        if (base / "config.yaml").exists():
            print(
                f"dmlkit: notice: {base} holds a run that stopped before its first checkpoint; "
                "starting over in it",
                file=sys.stderr,
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
    runs = [r for r in runs if has_checkpoint(r)]
    if not runs:
        raise FileNotFoundError(
            f"--resume: no run of {output.name!r} with a checkpoint under {parent}; pass the run "
            "folder explicitly (--resume RUN_DIR)"
        )
    return max(runs, key=lambda r: r.stat().st_mtime_ns)
