"""Pair losses vs pytorch-metric-learning (PML): forward+backward time and peak memory.

Same inputs, same process, float32 on the CPU, forward + backward of the loss on unit-norm
embeddings that require grad. For every setting the three steps (ours, PML, the matmul floor) are
timed in ``--rounds`` interleaved rounds, each round the median of ``--repeats`` runs
(:func:`benchmarks.common.time_median`); the reported time is the median over rounds, so a burst of
load on the shared machine hits all three alike. ratio = ours / PML. Peak memory is the profiler's
peak of live tensor bytes allocated during one step (:func:`benchmarks.common.peak_memory_bytes`).

The matmul floor is the autograd step of ``(X Xᵀ).sum()``: the Gram forward plus the two backward
products. dmlkit's Gram backward for the batch against itself is a single product ``(G + Gᵀ) X``,
so a light loss can run below the floor (``ours_over_floor < 1``).

PML has no binomial-deviance loss; that row is timed against the floor only.

    python benchmarks/bench_pair_losses.py [--quick] [--rounds 3] [--repeats 5] [--threads 2 1]

The table runs once per ``--threads`` count (default: torch's default, then 1). On a shared,
oversubscribed machine the single-thread rows show the cost of the computation itself; with
several threads, every elementwise pass waits for its slowest thread, which inflates the loss
steps much more than the matrix products of the floor.

``--catalogue`` times the whole loss catalogue instead: every case of the
``benchmarks/catalogue_*.py`` modules (each loss beside its PML peer at matching settings, see
:mod:`benchmarks.catalogue`) at B = 128, D = 128, 32 classes, one thread, timed by process CPU time, into
``pair_losses_catalogue.json``.

``--quick`` runs small sizes and prints without writing a result file.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytorch_metric_learning import distances, losses, miners

from benchmarks.catalogue import Case
from benchmarks.common import peak_memory_bytes, time_median, write_result
from dmlkit.losses import create

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
COS = distances.CosineSimilarity()


def _ms_with_miner(beta: float) -> Step:
    loss, miner = losses.MultiSimilarityLoss(2.0, beta, 0.5), miners.MultiSimilarityMiner(0.1)
    return lambda e, y: loss(e, y, miner(e, y))


# name -> (ours, PML at the same settings or None); every pair computes the same loss
CASES: dict[str, tuple[Callable[[], Step], Callable[[], Step] | None]] = {
    "ms_mined": (
        lambda: create("ms", alpha=2.0, beta=50.0, threshold=0.5, epsilon=0.1),
        lambda: _ms_with_miner(50.0),
    ),
    "ms_no_miner": (
        lambda: create("ms", alpha=2.0, beta=50.0, threshold=0.5, epsilon=None),
        lambda: losses.MultiSimilarityLoss(2.0, 50.0, 0.5),
    ),
    "contrastive": (
        lambda: create("contrastive", pos_margin=1.0, neg_margin=0.5, normalize="sides_nonzero"),
        lambda: losses.ContrastiveLoss(1.0, 0.5, distance=COS),
    ),
    "lifted": (
        lambda: create("lifted", pos_margin=0.0, neg_margin=1.0),
        lambda: losses.GeneralizedLiftedStructureLoss(
            neg_margin=-1.0, pos_margin=0.0, distance=COS
        ),
    ),
    "circle": (
        lambda: create("circle", reduction="mean_nonzero"),
        lambda: losses.CircleLoss(0.4, 80),
    ),
    "binomial": (lambda: create("binomial"), None),
}

# (case, B, D, classes): classes chosen for 16 samples per class on average
SETTINGS = [
    ("ms_mined", 1024, 512, 64),
    ("ms_mined", 4096, 128, 256),
    ("contrastive", 1024, 512, 64),
    ("lifted", 1024, 512, 64),
    ("binomial", 1024, 512, 64),
    ("ms_no_miner", 1024, 512, 64),
    ("circle", 1024, 512, 64),
]

TARGETS = {
    "ms_mined B=1024 D=512": "time_ratio <= 1.0",
    "ms_mined B=4096 D=128": "time_ratio <= 0.8 and memory_ratio <= 0.7",
    "contrastive, lifted B=1024 D=512": "time_ratio <= 1.0",
    "binomial B=1024 D=512": "no PML counterpart: ours_over_floor reported",
    "floor": "aim ours_over_floor <= 1.5 at D=512",
}


def _inputs(b: int, d: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    return x, torch.randint(0, classes, (b,), generator=g)


def _step(loss_fn: Step, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        e = x.detach().requires_grad_(True)
        loss_fn(e, y).backward()

    return run


def _floor(e: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    return (e @ e.T).sum()


def _measure(
    steps: dict[str, Callable[[], None]],
    rounds: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Per step, the median time (by ``clock``) of each of ``rounds`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(time_median(step, repeats, 1, clock)["median_s"])
    return times


def measure(
    ours: Step,
    theirs: Step | None,
    x: torch.Tensor,
    y: torch.Tensor,
    rounds: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Time by ``clock`` (median of interleaved rounds) and peak memory of ``ours``, ``theirs``
    and the floor on ``x, y``, with the ratios ours / theirs."""
    steps = {"ours": _step(ours, x, y), "floor": _step(_floor, x, y)}
    if theirs is not None:
        steps["pml"] = _step(theirs, x, y)
    times = _measure(steps, rounds, repeats, clock)
    row: dict[str, Any] = {}
    for key, values in times.items():
        row[f"{key}_s"] = statistics.median(values)
        row[f"{key}_rounds_s"] = values
    row["ours_over_floor"] = row["ours_s"] / row["floor_s"]
    row["ours_peak_bytes"] = peak_memory_bytes(steps["ours"])
    if "pml" in steps:
        row["pml_peak_bytes"] = peak_memory_bytes(steps["pml"])
        row["time_ratio"] = row["ours_s"] / row["pml_s"]
        row["time_ratio_rounds"] = [o / p for o, p in zip(times["ours"], times["pml"], strict=True)]
        row["memory_ratio"] = row["ours_peak_bytes"] / row["pml_peak_bytes"]
    return row


def run_setting(
    name: str, b: int, d: int, classes: int, rounds: int, repeats: int
) -> dict[str, Any]:
    x, y = _inputs(b, d, classes)
    ours_factory, theirs_factory = CASES[name]
    theirs = None if theirs_factory is None else theirs_factory()
    row: dict[str, Any] = {"loss": name, "B": b, "D": d, "classes": classes}
    return row | measure(ours_factory(), theirs, x, y, rounds, repeats)


def catalogue_cases() -> dict[str, Case]:
    """Every case of the ``benchmarks/catalogue_*.py`` modules (one per loss family)."""
    cases: dict[str, Case] = {}
    for path in sorted(Path(__file__).parent.glob("catalogue_*.py")):
        module = importlib.import_module(f"benchmarks.{path.stem}")
        cases.update(module.CASES)
    return cases


def run_catalogue(b: int, d: int, classes: int, rounds: int, repeats: int) -> list[dict[str, Any]]:
    """Each catalogue case at one setting: ours beside its peer (or the floor alone)."""
    x, y = _inputs(b, d, classes)
    rows = []
    for name, case in catalogue_cases().items():
        torch.manual_seed(0)
        ours = case.ours(classes, d)
        theirs = None if case.peer is None else case.peer(classes, d)
        row: dict[str, Any] = {"loss": name, "B": b, "D": d, "classes": classes}
        row |= measure(ours, theirs, x, y, rounds, repeats, time.process_time)
        if case.note:
            row["note"] = case.note
        shown = {k: v for k, v in row.items() if "rounds" not in k}
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in shown.items()})
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="B / 4, one round, no result file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[torch.get_num_threads(), 1],
        help="torch thread counts to run the whole table with (default: the default and 1)",
    )
    parser.add_argument(
        "--catalogue",
        action="store_true",
        help="every benchmarks/catalogue_*.py case at B=128 D=128 (32 classes), one thread; "
        "writes pair_losses_catalogue.json",
    )
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    if args.catalogue:
        torch.set_num_threads(1)
        b = 64 if args.quick else 128
        rows = run_catalogue(b, 128, 32, rounds, args.repeats)
        if not args.quick:
            payload = {
                "dtype": "float32",
                "pass": "forward+backward",
                "threads": 1,
                "clock": "process CPU time (one thread: the work, not the waits for a core)",
            }
            path = write_result("pair_losses_catalogue", {**payload, "results": rows})
            print(f"wrote {path}")
        return
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, b, d, classes in SETTINGS:
            row: dict[str, Any] = {"threads": threads}
            row |= run_setting(name, b // 4 if args.quick else b, d, classes, rounds, args.repeats)
            shown = {k: v for k, v in row.items() if "rounds" not in k}
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in shown.items()})
            rows.append(row)
    if args.quick:
        return
    payload = {
        "dtype": "float32",
        "pass": "forward+backward",
        "rounds": rounds,
        "repeats_per_round": args.repeats,
        "floor": "autograd step of (X X^T).sum(): Gram forward + two backward matmuls",
        "threads": args.threads,
        "targets": TARGETS,
        "results": rows,
    }
    print(f"wrote {write_result('pair_losses', payload)}")


if __name__ == "__main__":
    main()
