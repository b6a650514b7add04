"""Pair losses in row blocks (``chunk_size``) vs in one piece: peak memory and time at B = 4096.

Same inputs (float32 unit-norm embeddings, D = 128, 16 samples per class), one forward + backward
step per call. Peak memory is the profiler's peak of live tensor bytes allocated during one step
(:func:`benchmarks.common.peak_memory_bytes`); time is the median over a few steps after a warm-up
of the wall time and of the process CPU time (:func:`benchmarks.common.wall_and_cpu`: on a shared,
oversubscribed machine the CPU time is the work, the wall time also counts waits for a core).
Each chunked run is also checked against the one-piece run: the largest relative difference of
the loss and of the gradient are recorded.

    python benchmarks/bench_chunked.py [--quick] [--threads 2]

``--quick`` runs B = 512 and writes ``chunked_quick.json``.
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import finish_run, peak_memory_bytes, run_parser, wall_and_cpu
from dmlkit.losses import PairLoss, create

LOSSES = ("supcon", "ms", "contrastive")
DIM, PER_CLASS = 128, 16


def _step(loss: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    e = x.detach().requires_grad_(True)
    value = loss(e, y)
    value.backward()
    assert e.grad is not None
    return float(value.detach()), e.grad


def measure(name: str, batch: int, chunks: list[int | None], repeats: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(batch, DIM, generator=g), dim=1)
    y = torch.randint(0, batch // PER_CLASS, (batch,), generator=g)
    rows: dict[str, Any] = {}
    whole: tuple[float, torch.Tensor] | None = None
    for chunk in chunks:  # None (one piece) first
        loss = create(name)
        assert isinstance(loss, PairLoss)
        step = functools.partial(_step, loss.chunked(chunk), x, y)
        value, grad = step()  # also the warm-up
        whole_value, whole_grad = whole = whole or (value, grad)
        peak = peak_memory_bytes(step)
        runs = [wall_and_cpu(step) for _ in range(repeats)]
        rows[str(chunk)] = {
            "peak_bytes": peak,
            "median_wall_s": statistics.median(r[0] for r in runs),
            "median_cpu_s": statistics.median(r[1] for r in runs),
            "runs_wall_cpu_s": runs,
            "loss_rel_diff": abs(value - whole_value) / abs(whole_value),
            "grad_rel_diff": float((grad - whole_grad).abs().max() / whole_grad.abs().max()),
        }
    base = rows["None"]
    for row in rows.values():
        row["memory_ratio"] = row["peak_bytes"] / base["peak_bytes"]
        row["wall_ratio"] = row["median_wall_s"] / base["median_wall_s"]
        row["cpu_ratio"] = row["median_cpu_s"] / base["median_cpu_s"]
    return rows


def main() -> None:
    args = run_parser(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    batch = 512 if args.quick else 4096
    chunks: list[int | None] = [None, 256] if not args.quick else [None, 128]
    results = {}
    for name in LOSSES:
        results[name] = measure(name, batch, chunks, repeats=1 if args.quick else 3)
        for chunk, row in results[name].items():
            print(
                f"{name:12s} chunk={chunk:>5s}  peak {row['peak_bytes'] / 2**20:8.1f} MiB "
                f"({row['memory_ratio']:.3f}x)  cpu {row['median_cpu_s']:.3f} s "
                f"({row['cpu_ratio']:.2f}x)  wall {row['median_wall_s']:.3f} s "
                f"({row['wall_ratio']:.2f}x)  grad diff {row['grad_rel_diff']:.1e}"
            )
    payload = {"B": batch, "D": DIM, "per_class": PER_CLASS, "dtype": "float32"}
    finish_run("chunked", args, start, {**payload, "results": results})


if __name__ == "__main__":
    main()
