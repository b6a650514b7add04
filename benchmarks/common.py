"""Measurement helpers shared by the side-by-side benchmarks.

- :func:`time_median`: median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs.
- :func:`wall_and_cpu`: wall time and process CPU time of one call (one-thread benchmarks on a
  shared machine report both; the CPU time does not count the waits for a core).
- :func:`peak_memory_bytes`: peak of live tensor bytes allocated while ``fn`` runs, from the
  PyTorch profiler's allocation records (op granularity: an allocation freed inside the same op is
  not seen). Tensors that exist before the call (inputs) are not counted, so two implementations
  run on the same inputs are compared on what they themselves allocate, forward and backward.
- :func:`peak_rss_bytes`: peak resident set size of the process while ``fn`` runs (sampled from
  ``/proc/self/statm``), for end-to-end memory claims that include non-tensor allocations.
- :func:`machine_info` and :func:`write_result`: the JSON envelope every benchmark writes.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def time_median(
    fn: Callable[[], Any],
    repeats: int = 7,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times, then time ``repeats`` runs by ``clock`` (wall time; with one
    thread ``time.process_time`` counts the work, not the waits for a core on a busy machine);
    return median and all runs (s)."""
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        gc.collect()
        t0 = clock()
        fn()
        runs.append(clock() - t0)
    return {"median_s": statistics.median(runs), "runs_s": runs}


def wall_and_cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process, all threads)`` of one call of ``fn``. On an
    oversubscribed machine a one-thread benchmark's CPU time is its work, while its wall time
    also counts the time it waited for a core."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def peak_memory_bytes(fn: Callable[[], Any]) -> int:
    """Peak live bytes of tensors allocated during ``fn`` (CPU allocator, profiler records)."""
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records: list[tuple[int, int]] = []
    for event in prof.events():
        if event.name == "[memory]":
            records.append((event.time_range.start, event.cpu_memory_usage))
        elif event.self_cpu_memory_usage != 0:
            records.append((event.time_range.start, event.self_cpu_memory_usage))
    records.sort(key=lambda r: r[0])
    current = peak = 0
    for _, delta in records:
        current += delta
        peak = max(peak, current)
    return peak


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes(fn: Callable[[], Any], interval_s: float = 0.005) -> tuple[int, int, Any]:
    """Run ``fn`` once; return ``(peak_rss, rss_before, result)`` sampled every ``interval_s``."""
    gc.collect()
    before = _rss_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    return max(peak, _rss_bytes()), before, result


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info() -> dict[str, Any]:
    """Machine, load and library versions, recorded with every result."""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in (
                "dmlkit",
                "torch",
                "numpy",
                "pytorch-metric-learning",
                "faiss-cpu",
                "scikit-learn",
            )
        },
    }


def write_result(name: str, payload: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    """Write ``{"machine": ..., **payload}`` to ``<directory>/<name>.json`` (default
    ``benchmarks/results/``); return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2) + "\n")
    return path


def run_parser(doc: str | None) -> Any:
    """An ``argparse`` parser with the options every benchmark run takes: ``--quick`` (a smoke
    run) and ``--threads`` (torch threads, 2 by default)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--threads", type=int, default=2, help="torch (and faiss) threads")
    return parser


def finish_run(name: str, args: Any, start: float, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with the run's threads, quick flag and wall time to
    ``<name>.json`` (``<name>_quick.json`` for a smoke run) and print where."""
    record = {"threads": args.threads, "quick": args.quick, "wall_s": time.perf_counter() - start}
    path = write_result(f"{name}_quick" if args.quick else name, {**record, **payload})
    print(f"wrote {path}")
    return path
