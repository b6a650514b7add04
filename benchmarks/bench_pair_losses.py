"""Pair and triplet losses vs pytorch-metric-learning: forward+backward time and peak memory.

Same inputs, same process, float32 on the CPU, median of >= 5 runs; ratio = ours / PML.
Also reports the matmul floor: the S = X Xᵀ forward plus its two backward matmuls.

    python benchmarks/bench_pair_losses.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import peak_memory_bytes, time_median, write_result  # noqa: E402
from dmlkit.losses import create  # noqa: E402
from pytorch_metric_learning import distances, losses, miners  # noqa: E402

COS = distances.CosineSimilarity()


def _inputs(b: int, d: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    y = torch.randint(0, classes, (b,), generator=g)
    return x, y


def _step(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
          y: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        e = x.detach().requires_grad_(True)
        loss_fn(e, y).backward()

    return run


def _floor(x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        e = x.detach().requires_grad_(True)
        (e @ e.T).sum().backward()

    return run


CASES: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "ms_mined": (
        lambda: create("ms", alpha=2.0, beta=50.0, threshold=0.5, epsilon=0.1),
        lambda: (lambda l, m: (lambda e, y: l(e, y, m(e, y))))(
            losses.MultiSimilarityLoss(2.0, 50.0, 0.5), miners.MultiSimilarityMiner(0.1)
        ),
    ),
    "contrastive": (
        lambda: create("contrastive", normalize="sides_nonzero"),
        lambda: losses.ContrastiveLoss(1.0, 0.5, distance=COS),
    ),
    "lifted": (
        lambda: create("lifted", pos_margin=0.0, neg_margin=1.0),
        lambda: losses.GeneralizedLiftedStructureLoss(neg_margin=-1.0, pos_margin=-0.0, distance=COS),
    ),
    "binomial": (
        lambda: create("binomial"),
        None,  # no PML counterpart: timed against the matmul floor only
    ),
    "triplet_all": (
        lambda: create("triplet", margin=0.1),
        lambda: losses.TripletMarginLoss(0.1, distance=COS),
    ),
}

SETTINGS = [
    ("ms_mined", 1024, 512, 64),
    ("ms_mined", 4096, 128, 256),
    ("contrastive", 1024, 512, 64),
    ("lifted", 1024, 512, 64),
    ("binomial", 1024, 512, 64),
    ("triplet_all", 1024, 128, 64),
    ("triplet_all", 4096, 128, 256),
]


def _pml_triplet_bytes(y: torch.Tensor) -> int:
    """Index + loss tensors PML materialises for all triplets (3 int64 + 3 float32 per triplet)."""
    counts = torch.bincount(y).long()
    triplets = int((counts * (counts - 1) * (len(y) - counts)).sum())
    return triplets * (3 * 8 + 3 * 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 runs")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    rows = []
    for name, b, d, classes in SETTINGS:
        if args.quick:
            b //= 4
        x, y = _inputs(b, d, classes)
        ours_f, theirs_f = CASES[name]
        ours = _step(ours_f(), x, y)
        row: dict[str, Any] = {"loss": name, "B": b, "D": d, "classes": classes}
        row["ours_s"] = time_median(ours, repeats)["median_s"]
        row["ours_peak_bytes"] = peak_memory_bytes(ours)
        row["floor_s"] = time_median(_floor(x), repeats)["median_s"]
        row["ours_over_floor"] = row["ours_s"] / row["floor_s"]
        if theirs_f is not None:
            estimate = _pml_triplet_bytes(y) if name == "triplet_all" else 0
            if estimate > 12 * 2**30:
                row["pml"] = f"not run: all-triplet tensors alone need ~{estimate / 2**30:.0f} GiB"
            else:
                theirs = _step(theirs_f(), x, y)
                row["pml_s"] = time_median(theirs, repeats)["median_s"]
                row["pml_peak_bytes"] = peak_memory_bytes(theirs)
                row["time_ratio"] = row["ours_s"] / row["pml_s"]
                row["memory_ratio"] = row["ours_peak_bytes"] / row["pml_peak_bytes"]
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        rows.append(row)
    targets = {
        "ms_mined B=1024 D=512": "time_ratio <= 1.0",
        "ms_mined B=4096 D=128": "time_ratio <= 0.8, memory_ratio <= 0.7",
        "contrastive/lifted B=1024 D=512": "time_ratio <= 1.0",
        "binomial B=1024 D=512": "no PML counterpart; ours_over_floor reported",
        "triplet_all B=1024 D=128": "time_ratio <= 0.1, memory_ratio <= 0.1",
        "floor": "aim ours_over_floor <= 1.5 at D=512",
    }
    path = write_result("pair_losses" + ("_quick" if args.quick else ""),
                        {"dtype": "float32", "pass": "forward+backward", "repeats": repeats,
                         "targets": targets, "results": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
