"""Distributed training throughput on the CPU: 2 gloo processes against 1 on the glyph config.

Each setting trains ``configs/glyphs/ms.yaml`` for ``--steps`` steps (``--threads`` torch threads
per process) and reads the training throughput (global images per second, evaluation excluded)
from rank 0's log: the median over the log windows after the first (warm-up), with the machine's
load average before it. Settings:

- ``1 process``: the config's batch of 128;
- ``2 processes, same global batch``: 64 rows per rank (the loss sees the same 128 rows);
- ``2 processes, batch per rank``: 128 rows per rank (global batch 256).

Writes ``benchmarks/results/ddp.json``; the speed-ups are against the 1-process setting. On a
machine with fewer free cores than processes the processes share cores and the figure says so.

    python benchmarks/bench_ddp.py [--steps 60] [--threads 1] [--set a.b=c ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result
from dmlkit.config import load_config
from dmlkit.data import create_dataset
from dmlkit.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
LOG_EVERY = 10


def _train(rank: int, world: int, folder: Path, overrides: list[str], threads: int) -> None:
    torch.set_num_threads(threads)
    if world > 1:
        store = f"file://{folder / 'store'}"
        dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world)
    try:
        config = load_config(str(ROOT / "configs" / "glyphs" / "ms.yaml"), overrides)
        Trainer(config, folder / "run").fit()
    finally:
        if world > 1:
            dist.destroy_process_group()


def measure(world: int, batch_size: int, steps: int, threads: int, extra: list[str]) -> dict:
    """Train in ``world`` processes with ``batch_size`` rows per rank; throughput from the log."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "run").mkdir()
        overrides = [
            *extra,
            f"data.batch_size={batch_size}",
            f"train.steps={steps}",
            f"train.log_every={LOG_EVERY}",
            "train.eval_every=0",
            f"train.checkpoint_every={steps}",
            "train.progress=false",
            "eval.before=false",
            "output.report=false",
            "output.embeddings=false",
            f"output.dir={folder}",
        ]
        mp.spawn(_train, args=(world, folder, overrides, threads), nprocs=world, join=True)
        lines = (folder / "run" / "log.jsonl").read_text().splitlines()
    windows = [r["images_per_s"] for r in map(json.loads, lines) if r["kind"] == "train"]
    rates = windows[1:]
    return {
        "processes": world,
        "batch_per_rank": batch_size,
        "global_batch": batch_size * world,
        "steps": steps,
        "threads_per_process": threads,
        "load_average_1m_before": load_before,
        "images_per_s_median": statistics.median(rates),
        "images_per_s_windows": rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.steps <= 2 * LOG_EVERY:
        parser.error(f"--steps: expected more than {2 * LOG_EVERY} (warm-up window + one more)")
    config = load_config(str(ROOT / "configs" / "glyphs" / "ms.yaml"), args.set)
    create_dataset(config.data.name, "test", root=config.data.root, **config.data.options)
    batch = config.data.batch_size
    settings: list[dict[str, Any]] = [
        {"name": "1 process", **measure(1, batch, args.steps, args.threads, args.set)},
        {
            "name": "2 processes, same global batch",
            **measure(2, batch // 2, args.steps, args.threads, args.set),
        },
        {
            "name": "2 processes, batch per rank",
            **measure(2, batch, args.steps, args.threads, args.set),
        },
    ]
    single = settings[0]["images_per_s_median"]
    for setting in settings:
        setting["speedup_vs_1_process"] = setting["images_per_s_median"] / single
    path = write_result(
        "ddp",
        {
            "benchmark": "DDP throughput, gloo on the CPU, configs/glyphs/ms.yaml",
            "overrides": args.set,
            "settings": settings,
        },
    )
    for s in settings:
        print(
            f"{s['name']:<32} {s['images_per_s_median']:8.1f} img/s "
            f"(x{s['speedup_vs_1_process']:.2f})"
        )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
