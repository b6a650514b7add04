"""DRO pair losses vs pytorch-metric-learning's multi-similarity (with its miner): loss-only
forward+backward time at batch sizes 80, 640 and 4096 (m = 5 images per class, D = 512).

The DRO paper reports DRO faster per iteration than MS and lifted structure (its Fig. 5e, model
included: ~0.24 s vs ~0.44 s at batch 80); this measures the loss part alone.

Labels: consecutive classes of m = 5 (4096 = 819 x 5 + 1: the last class has one image).
Runs on ``--threads`` torch threads (1 by default: on a shared 2-core machine, several threads
make the small-batch timings measure the scheduler rather than the loss).

    python benchmarks/bench_dro.py [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytorch_metric_learning import losses, miners

from benchmarks.common import time_median, write_result
from dmlkit.losses import create


def _step(fn: Any, x: torch.Tensor, y: torch.Tensor) -> Any:
    def run() -> None:
        e = x.detach().requires_grad_(True)
        fn(e, y).backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="batches 80 and 640 only, 3 runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 7
    pml_loss, pml_miner = (
        losses.MultiSimilarityLoss(2.0, 40.0, 0.5),
        miners.MultiSimilarityMiner(0.1),
    )
    ours = {
        "dro_topk": create("dro_topk"),
        "dro_kl": create("dro_kl"),
        "dro_topk_pn": create("dro_topk_pn"),
        "ms_official": create("ms_official"),
    }
    rows = []
    for batch in (80, 640) if args.quick else (80, 640, 4096):
        g = torch.Generator().manual_seed(0)
        x = torch.nn.functional.normalize(torch.randn(batch, 512, generator=g), dim=1)
        y = torch.arange(batch) // 5
        pml = time_median(_step(lambda e, t: pml_loss(e, t, pml_miner(e, t)), x, y), repeats)
        row: dict[str, Any] = {"batch": batch, "m": 5, "D": 512, "pml_ms_mined_s": pml["median_s"]}
        for name, loss in ours.items():
            t = time_median(_step(loss, x, y), repeats)["median_s"]
            row[f"{name}_s"] = t
            row[f"{name}_over_pml_ms"] = t / pml["median_s"]
        print(row, flush=True)
        rows.append(row)
    name = "dro_speed" + ("_quick" if args.quick else "")
    print(
        f"wrote {write_result(name, {'pass': 'forward+backward, loss only', 'threads': args.threads, 'results': rows})}"
    )


if __name__ == "__main__":
    main()
