"""Triplet family, margin loss and cross-batch memory vs pytorch-metric-learning (PML).

Same inputs, same process, float32 on the CPU, forward + backward; ours is the median of ``repeats``
runs; ratio = ours / PML. Peak memory is the profiler's peak of live tensor bytes allocated during
one forward + backward (inputs excluded).

PML enumerates every triplet it scores: below ``B R² < 2^31`` it builds a ``(B, R, R)`` uint8 mask,
above it loops over anchors in Python, and then it keeps three int64 indices and several float32
values per triplet. Before running the peer, its peak is estimated from the triplet count with the
bytes per triplet measured by this script at B = 2048 (``PML_BYTES_PER_TRIPLET``); the peer is not
run when the estimate exceeds ``--peer-limit-gib`` (the row then says so, with the estimate). A
peer run longer than 30 s is timed once (``pml_runs`` records how many runs the median used).

    python benchmarks/bench_triplet.py [--quick] [--peer-limit-gib 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytorch_metric_learning import distances, losses, miners

from benchmarks.common import peak_memory_bytes, time_median, write_result
from dmlkit.losses import create
from dmlkit.losses.margin import MarginLoss
from dmlkit.methods import CrossBatchMemory

COS = distances.CosineSimilarity()
PML_BYTES_PER_TRIPLET = 48  # measured: 3.25e9 bytes for 6.73e7 triplets at B = 2048, D = 128
LONG_RUN_S = 30.0

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _with_miner(loss: torch.nn.Module, miner: torch.nn.Module) -> Step:
    return lambda e, y: loss(e, y, miner(e, y))


def _memory_pair(classes: int) -> tuple[Step, Step]:
    """Cross-batch memory of 2048 slots around semi-hard triplets, for both libraries."""
    ours = CrossBatchMemory(create("triplet_semihard", margin=0.1), 128, 2048)
    theirs = losses.CrossBatchMemory(
        losses.TripletMarginLoss(0.1, distance=COS),
        128,
        2048,
        miner=miners.TripletMarginMiner(0.1, type_of_triplets="semihard", distance=COS),
    )
    g = torch.Generator().manual_seed(1)
    for _ in range(16):  # fill both queues with the same past batches
        past = torch.nn.functional.normalize(torch.randn(128, 128, generator=g), dim=1)
        past_y = torch.randint(0, classes, (128,), generator=g)
        ours(past, past_y)
        theirs(past, past_y)
    return ours, theirs


def _cases(classes: int) -> dict[str, tuple[Callable[[], Step], Callable[[], Step]]]:
    return {
        "triplet_all": (
            lambda: create("triplet", margin=0.1),
            lambda: losses.TripletMarginLoss(0.1, distance=COS),
        ),
        "triplet_semihard": (
            lambda: create("triplet_semihard", margin=0.1),
            lambda: _with_miner(
                losses.TripletMarginLoss(0.1, distance=COS),
                miners.TripletMarginMiner(0.1, type_of_triplets="semihard", distance=COS),
            ),
        ),
        "triplet_batch_hard": (
            lambda: create("triplet_batch_hard", margin=0.1),
            lambda: _with_miner(
                losses.TripletMarginLoss(0.1, distance=COS), miners.BatchHardMiner(distance=COS)
            ),
        ),
        "margin_all": (
            lambda: MarginLoss(classes, triplets="all"),
            lambda: losses.MarginLoss(0.2, learn_beta=True, num_classes=classes),
        ),
        "margin_distance_weighted": (
            lambda: MarginLoss(classes, generator=torch.Generator().manual_seed(0)),
            lambda: _with_miner(
                losses.MarginLoss(0.2, learn_beta=True, num_classes=classes),
                miners.DistanceWeightedMiner(0.5, 1.4),
            ),
        ),
    }


SETTINGS = [
    ("triplet_all", 1024, 128, 64),
    ("triplet_all", 4096, 128, 256),
    ("triplet_semihard", 1024, 128, 64),
    ("triplet_batch_hard", 1024, 128, 64),
    ("margin_all", 1024, 128, 64),
    ("margin_distance_weighted", 1024, 128, 64),
    ("memory_triplet_semihard", 128, 128, 128),
]
ALL_TRIPLET_PEERS = ("triplet_all", "triplet_semihard", "margin_all", "memory_triplet_semihard")


def _inputs(b: int, d: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    y = torch.randint(0, classes, (b,), generator=g)
    return x, y


def _step(fn: Step, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        e = x.detach().requires_grad_(True)
        fn(e, y).backward()

    return run


def _triplet_count(y: torch.Tensor, ref_y: torch.Tensor) -> int:
    """Number of (a, p, n); the reference set holds each row's own copy, which is no positive."""
    same = (y[:, None] == ref_y[None, :]).sum(1).long()
    return int(((same - 1).clamp_min(0) * (len(ref_y) - same)).sum())


def _pml_estimate_bytes(b: int, r: int, triplets: int) -> int:
    mask = b * r * r if b * r * r < 2**31 - 1 else 0
    return mask + triplets * PML_BYTES_PER_TRIPLET


def _time_peer(run: Callable[[], None], repeats: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    if first > LONG_RUN_S:
        return {"median_s": first, "runs_s": [first]}
    return time_median(run, repeats, warmup=0)


def _measure(name: str, b: int, d: int, classes: int, repeats: int, limit: float) -> dict[str, Any]:
    x, y = _inputs(b, d, classes)
    row: dict[str, Any] = {"case": name, "B": b, "D": d, "classes": classes}
    if name.startswith("memory_"):
        ours_fn, theirs_fn = _memory_pair(classes)
        row["memory_size"] = 2048
        ref_y = ours_fn.labels
    else:
        ours_f, theirs_f = _cases(classes)[name]
        ours_fn, theirs_fn = ours_f(), theirs_f()
        ref_y = y
    ours = _step(ours_fn, x, y)
    timing = time_median(ours, repeats)
    row["ours_s"], row["ours_runs"] = timing["median_s"], len(timing["runs_s"])
    row["ours_peak_bytes"] = peak_memory_bytes(ours)
    if name in ALL_TRIPLET_PEERS:
        triplets = _triplet_count(y, ref_y)
        row["triplets"] = triplets
        row["pml_estimated_peak_bytes"] = _pml_estimate_bytes(b, len(ref_y), triplets)
        if row["pml_estimated_peak_bytes"] > limit * 2**30:
            gib = row["pml_estimated_peak_bytes"] / 2**30
            row["pml"] = f"not run: estimated peak {gib:.1f} GiB > limit {limit:g} GiB"
            return row
    theirs = _step(theirs_fn, x, y)
    peer = _time_peer(theirs, repeats)
    row["pml_s"], row["pml_runs"] = peer["median_s"], len(peer["runs_s"])
    row["pml_peak_bytes"] = peak_memory_bytes(theirs)
    row["time_ratio"] = row["ours_s"] / row["pml_s"]
    row["memory_ratio"] = row["ours_peak_bytes"] / row["pml_peak_bytes"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="B / 4, 3 runs")
    parser.add_argument("--peer-limit-gib", type=float, default=16.0)
    parser.add_argument("--only", default=None, help="run only this case name")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    rows = []
    for name, b, d, classes in SETTINGS:
        if args.only and name != args.only:
            continue
        row = _measure(name, b // 4 if args.quick else b, d, classes, repeats, args.peer_limit_gib)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        rows.append(row)
    targets = {
        "triplet_all B=1024 D=128": "time_ratio <= 0.1, memory_ratio <= 0.1",
        "triplet_all B=4096 D=128": "reported; the peer runs only under --peer-limit-gib",
    }
    path = write_result(
        "triplet" + ("_quick" if args.quick else ""),
        {
            "dtype": "float32",
            "pass": "forward+backward",
            "repeats": repeats,
            "pml_bytes_per_triplet": PML_BYTES_PER_TRIPLET,
            "peer_limit_gib": args.peer_limit_gib,
            "targets": targets,
            "results": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
