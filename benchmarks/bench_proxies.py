"""Proxy losses and CCP's k-center selection at SOP scale, side by side with
pytorch-metric-learning (PML) in one process on the same inputs.

- ProxyAnchor, 11,318 classes, D = 512, B = 256 (one proxy per class): time ratio target <= 1.0;
- SoftTriple, 1,000 classes x 10 centres, D = 512, B = 1,024 (tau = 0, PML has no centre
  regulariser): time ratio target <= 0.7;
- greedy k-center for CCP on SOP: 11,318 classes x 7 candidates x 4 proxies (D = 128, the paper's
  embedding, and D = 512), from the previous proxies: target <= 5 s.

A timed step is the loss forward and backward (gradients for the embeddings and the proxies).
``matmul_floor_s`` times the three matrix products that any implementation of the step needs
(similarities, and the gradients of both operands), with the same shapes.
The two implementations are timed in alternating rounds (the machine is shared; the load moves),
and the ratio is the ratio of the medians over all rounds. Memory: peak bytes of tensors allocated
during one step (:func:`benchmarks.common.peak_memory_bytes`).

Run at the default thread count and at one thread (``--threads 0 1``).

    python benchmarks/bench_proxies.py [--quick] [--threads 0 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytorch_metric_learning import losses as pml_losses

from benchmarks.common import peak_memory_bytes, time_median, write_result
from dmlkit.losses import create
from dmlkit.methods import greedy_k_center


def _step(loss: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    params = list(loss.parameters())

    def run() -> None:
        emb = x.detach().requires_grad_(True)
        loss(emb, y).backward()
        for p in params:
            p.grad = None

    return run


def _compare(
    name: str,
    ours: nn.Module,
    pml: nn.Module,
    pml_proxies: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    rounds: int,
    target: float,
) -> dict[str, Any]:
    with torch.no_grad():
        weight = ours.proxies.weight
        pml_proxies.copy_(weight if pml_proxies.shape == weight.shape else weight.T)
    value_ours, value_pml = float(ours(x, y).detach()), float(pml(x, y).detach())
    run_ours, run_pml = _step(ours, x, y), _step(pml, x, y)
    ours_s: list[float] = []
    pml_s: list[float] = []
    for _ in range(rounds):
        ours_s += time_median(run_ours, repeats=3, warmup=1)["runs_s"]
        pml_s += time_median(run_pml, repeats=3, warmup=1)["runs_s"]
    ratio = statistics.median(ours_s) / statistics.median(pml_s)
    row = {
        "case": name,
        "batch": x.shape[0],
        "dim": x.shape[1],
        "loss_ours": value_ours,
        "loss_pml": value_pml,
        "ours_median_s": statistics.median(ours_s),
        "pml_median_s": statistics.median(pml_s),
        "time_ratio": ratio,
        "target_ratio": target,
        "meets_target": ratio <= target,
        "ours_runs_s": ours_s,
        "pml_runs_s": pml_s,
        "ours_peak_bytes": peak_memory_bytes(run_ours),
        "pml_peak_bytes": peak_memory_bytes(run_pml),
    }
    row["memory_ratio"] = row["ours_peak_bytes"] / row["pml_peak_bytes"]
    row["matmul_floor_s"] = _matmul_floor(x, pml_proxies.numel() // x.shape[1], 2 * rounds)
    row["ours_over_floor"] = row["ours_median_s"] / row["matmul_floor_s"]
    row["pml_over_floor"] = row["pml_median_s"] / row["matmul_floor_s"]
    print({k: v for k, v in row.items() if not k.endswith("runs_s")}, flush=True)
    return row


def _matmul_floor(x: torch.Tensor, rows: int, repeats: int) -> float:
    """Median seconds of the three products every implementation needs: ``S = x Wᵀ``,
    ``dx = G W`` and ``dW = Gᵀ x`` for ``W (rows, D)``, ``G (B, rows)``."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(rows, x.shape[1], generator=g)
    grad = torch.randn(x.shape[0], rows, generator=g)

    def run() -> None:
        x @ w.T
        grad @ w
        grad.T @ x

    return float(time_median(run, repeats=repeats, warmup=1)["median_s"])


def _kcenter(classes: int, candidates: int, k: int, dim: int, repeats: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    pool = torch.randn(classes, candidates, dim, generator=g)
    init = torch.randn(classes, k, dim, generator=g)
    timing = time_median(lambda: greedy_k_center(pool, init, k), repeats=repeats, warmup=1)
    row = {
        "case": "greedy_k_center",
        "classes": classes,
        "candidates": candidates,
        "proxies_per_class": k,
        "dim": dim,
        "median_s": timing["median_s"],
        "runs_s": timing["runs_s"],
        "target_s": 5.0,
        "meets_target": timing["median_s"] <= 5.0,
        "peak_bytes": peak_memory_bytes(lambda: greedy_k_center(pool, init, k)),
    }
    print({k: v for k, v in row.items() if k != "runs_s"}, flush=True)
    return row


def _cases(rounds: int, quick: bool) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(0)
    classes, dim, batch = 11318, 512, 256
    x = torch.randn(batch, dim, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    ours = create("proxy_anchor", num_classes=classes, embedding_dim=dim)
    pml = pml_losses.ProxyAnchorLoss(classes, dim)
    anchor = _compare("proxy_anchor", ours, pml, pml.proxies, x, y, rounds, 1.0)

    classes, centres, batch = 1000, 10, 1024
    x = torch.randn(batch, dim, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    ours = create("soft_triple", num_classes=classes, embedding_dim=dim, per_class=centres, tau=0.0)
    pml = pml_losses.SoftTripleLoss(classes, dim, centers_per_class=centres)
    soft = _compare("soft_triple", ours, pml, pml.fc, x, y, rounds, 0.7)

    kcenter = [_kcenter(11318, 7, 4, d, 3 if quick else 5) for d in (128, 512)]
    return [anchor, soft, *kcenter]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[0, 1], help="torch threads (0: default)"
    )
    args = parser.parse_args()
    rounds = 2 if args.quick else 5
    default_threads = torch.get_num_threads()
    start = time.perf_counter()
    results = {}
    for threads in args.threads:
        torch.set_num_threads(threads or default_threads)
        print(f"threads: {torch.get_num_threads()}", flush=True)
        results[str(torch.get_num_threads())] = _cases(rounds, args.quick)
    payload = {
        "pass": "loss forward + backward (embeddings and proxies); k-center selection alone",
        "rounds": rounds,
        "results_by_threads": results,
        "wall_s": time.perf_counter() - start,
    }
    name = "proxies" + ("_quick" if args.quick else "")
    print(f"wrote {write_result(name, payload)}")


if __name__ == "__main__":
    main()
