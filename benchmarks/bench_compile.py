"""Compiled vs eager training step on the glyph config (``configs/glyphs/ms.yaml``, small CNN).

Trainers of the same config run side by side in this process, evaluation and checkpoints off:

- ``eager``: the default step;
- ``channels_last``: ``train.channels_last=true`` (eager);
- ``compile``: ``train.compile=true`` (torch.compile, inductor; contiguous layout, the CPU default);
- ``compile_channels_last``: both;
- ``compile_channels_last_loss``: both, and the loss compiled too (``torch.compile`` of the
  trainer's loss module here; the library keeps the loss eager, this variant measures why).

After a warm-up window each (the compiled ones compile there; its duration is recorded),
windows of ``--steps`` steps alternate between the variants (order reversed every round), each
timed by the process's CPU time (one thread: the work itself, without the waits for a core on a
shared machine) and by the wall clock; images per CPU-second is the median over ``--repeats``
windows and ``ratio_vs_eager`` compares it with ``eager`` (goal for ``compile`` >= 1.3x; the wall
clock's in ``ratio_vs_eager_wall_clock``). The loader runs in the main process
(``data.num_workers: 0``, as the config has it), so its time is part of every step. One further window of ``eager`` and of ``compile`` runs under the PyTorch
profiler: the ops with the largest self CPU time and their share are the measured account of
where a step's time goes. Writes ``benchmarks/results/compile.json``.

    python benchmarks/bench_compile.py [--steps 10] [--repeats 7] [--threads 1] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, wall_and_cpu, write_result
from dmlkit.config import load_config
from dmlkit.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
GOAL = 1.3
VARIANTS: dict[str, list[str]] = {
    "eager": [],
    "channels_last": ["train.channels_last=true"],
    "compile": ["train.compile=true"],
    "compile_channels_last": ["train.compile=true", "train.channels_last=true"],
    "compile_channels_last_loss": ["train.compile=true", "train.channels_last=true"],
}


def make_trainer(config_path: str, overrides: list[str], folder: Path) -> Trainer:
    """A started trainer of ``config_path`` with ``overrides``, evaluation and checkpoints off."""
    config = load_config(
        config_path,
        [
            "train.steps=1000000",
            "train.eval_every=0",
            "train.checkpoint_every=0",
            "train.progress=false",
            "eval.before=false",
            f"output.dir={folder}",
            *overrides,
        ],
    )
    trainer = Trainer(config, folder / "run")
    trainer.start()
    return trainer


def window(trainer: Trainer, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds of the next ``steps`` training steps."""
    return wall_and_cpu(lambda: trainer.train_until(trainer.step + steps))


def top_ops(trainer: Trainer, steps: int, count: int = 8) -> list[dict[str, Any]]:
    """The ``count`` ops with the largest self CPU time over ``steps`` steps, with their share."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        window(trainer, steps)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {
            "op": e.key,
            "self_cpu_ms": e.self_cpu_time_total / 1e3 / steps,
            "share": e.self_cpu_time_total / total,
        }
        for e in events[:count]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "glyphs" / "ms.yaml"))
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=7, help="timed windows per variant")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            name: make_trainer(args.config, overrides, Path(tmp) / name)
            for name, overrides in VARIANTS.items()
        }
        loss_variant = trainers["compile_channels_last_loss"]
        loss_variant.loss_fn = torch.compile(loss_variant.loss_fn)  # type: ignore[assignment]
        first_window_s = {name: window(t, args.steps)[0] for name, t in trainers.items()}
        names = list(trainers)
        runs: dict[str, dict[str, list[float]]] = {
            clock: {name: [] for name in names} for clock in ("wall", "cpu")
        }
        for r in range(args.repeats):
            for name in names if r % 2 == 0 else names[::-1]:
                wall, cpu = window(trainers[name], args.steps)
                runs["wall"][name].append(wall)
                runs["cpu"][name].append(cpu)
        profiles = {name: top_ops(trainers[name], args.steps) for name in ("eager", "compile")}
        for trainer in trainers.values():
            trainer.close()
        batch = trainers["eager"].config.data.batch_size
    rates = {
        clock: {k: args.steps * batch / statistics.median(v) for k, v in runs[clock].items()}
        for clock in ("cpu", "wall")
    }
    ratios = {k: v / rates["cpu"]["eager"] for k, v in rates["cpu"].items()}
    wall_ratios = {k: v / rates["wall"]["eager"] for k, v in rates["wall"].items()}
    result = {
        "benchmark": "training images/s of the glyph config: torch.compile and channels-last "
        "vs the eager step, same process, alternating windows",
        "config": str(Path(args.config).resolve().relative_to(ROOT)),
        "variants": VARIANTS,
        "threads": args.threads,
        "batch_size": batch,
        "steps_per_window": args.steps,
        "repeats": args.repeats,
        "load_average_1m_before": load_before,
        "load_average_1m_after": os.getloadavg()[0],
        "wall_s": time.perf_counter() - start,
        "first_window_s": first_window_s,
        "window_s": runs,
        "images_per_cpu_s": rates["cpu"],
        "images_per_wall_s": rates["wall"],
        "ratio_vs_eager": ratios,
        "ratio_vs_eager_wall_clock": wall_ratios,
        "goal_compile_vs_eager": GOAL,
        "passed": ratios["compile"] >= GOAL,
        "profile_top_ops_per_step": profiles,
    }
    path = write_result("compile", result, Path(args.out_dir))
    for name, value in rates["cpu"].items():
        print(f"{name:28s} {value:7.1f} images/CPU-s {ratios[name]:.2f}x "
              f"(wall clock {wall_ratios[name]:.2f}x)")  # fmt: skip
    print(f"-> {path}")


if __name__ == "__main__":
    main()
