"""Accuracy studies on the zero-shot glyph benchmark: several arms (a config plus overrides), each
trained with several seeds under the same budget, compared on the unseen test characters.

Every run trains with ``dmlkit.training.Trainer`` exactly as ``dmlkit train`` does, selects its
checkpoint on the validation characters, and reports the selected step's test metrics. The study
result holds every run and, per arm, the mean and sample standard deviation (ddof 1) over seeds.

Used by the method benchmarks (``bench_dro_glyphs.py`` ...) and directly::

    python benchmarks/glyph_study.py --name my_study \
        --arm ms=configs/glyphs/ms.yaml --arm dro_topk=configs/glyphs/dro_topk.yaml \
        --seeds 0 1 2 --set train.steps=300 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result
from dmlkit.config import load_config
from dmlkit.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
REPORTED = ("map@r", "precision@1", "recall@1", "r_precision", "nmi")


def budget(steps: int, eval_every: int, checkpoint_every: int, warmup_steps: int) -> list[str]:
    """Overrides of a study's runs: the step budget, validation and checkpoint intervals, the
    warm-up, one torch thread, retrieval metrics (Recall@1, MAP@R) only, no progress bar, no
    evaluation before training, no embeddings written."""
    return [
        f"train.steps={steps}",
        f"train.eval_every={eval_every}",
        f"train.checkpoint_every={checkpoint_every}",
        f"schedule.warmup_steps={warmup_steps}",
        "train.num_threads=1",
        "train.progress=false",
        "eval.metrics=[recall, map@r]",
        "eval.ks=[1]",
        "eval.before=false",
        "output.embeddings=false",
    ]


@dataclass(frozen=True)
class Arm:
    """One compared setting: ``config`` (path) with ``overrides`` (``a.b=c`` strings)."""

    name: str
    config: str
    overrides: tuple[str, ...] = field(default_factory=tuple)


def run_once(arm: Arm, seed: int, common: Sequence[str]) -> dict[str, Any]:
    """Train ``arm`` with ``seed``; the selected step's test metrics (those of :data:`REPORTED`,
    also of a method's further views, ``view/metric``) and the training time.
    ``{seed}`` in an override is replaced by the seed (per-seed weights files, for example)."""
    with tempfile.TemporaryDirectory() as tmp:
        given = [o.replace("{seed}", str(seed)) for o in (*common, *arm.overrides)]
        overrides = [*given, f"seed={seed}", f"output.dir={tmp}"]
        config = load_config(ROOT / arm.config, [*overrides, "output.report=false"])
        start = time.perf_counter()
        metrics = Trainer(config, Path(tmp) / "run").fit()
        wall_s = time.perf_counter() - start
    best = metrics["best"]
    return {
        "seed": seed,
        "wall_s": wall_s,
        "train_time_s": metrics["train_time_s"],
        "best_step": metrics["best_step"],
        "selected_on": metrics["selected_on"],
        "test": {k: v for k, v in best.items() if k.rsplit("/", 1)[-1] in REPORTED},
    }


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per metric: mean and sample std over ``runs`` (std 0 for a single run)."""
    out: dict[str, dict[str, float]] = {}
    for key in runs[0]["test"]:
        values = [r["test"][key] for r in runs]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out[key] = {"mean": statistics.fmean(values), "std": std}
    return out


def run_study(
    name: str,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    common: Sequence[str] = (),
    meta: dict[str, Any] | None = None,
) -> Path:
    """Run every arm with every seed (arm-major), print one line per run and write
    ``benchmarks/results/<name>.json`` after each arm (``"complete"`` once all are done)."""
    if not arms or not seeds:
        raise ValueError("run_study: expected at least one arm and one seed")
    payload: dict[str, Any] = {
        "benchmark": f"zero-shot glyphs (unseen characters): {name}",
        "seeds": list(seeds),
        "common_overrides": list(common),
        "torch_threads": torch.get_num_threads(),
        **(meta or {}),
        "complete": False,
        "results": [],
    }
    results = payload["results"]
    for i, arm in enumerate(arms):
        runs = []
        for seed in seeds:
            run = run_once(arm, seed, common)
            test = run["test"]
            print(
                f"{name} {arm.name} seed {seed}: MAP@R {test['map@r']:.4f} "
                f"R@1 {test['recall@1']:.4f} step {run['best_step']} {run['wall_s']:.0f} s",
                flush=True,
            )
            runs.append(run)
        row = {"arm": arm.name, "config": arm.config, "overrides": list(arm.overrides)}
        results.append({**row, "summary": summarise(runs), "runs": runs})
        payload["complete"] = i == len(arms) - 1
        path = write_result(name, payload)  # after every arm: a cut-off study keeps its arms
    print(format_table(results))
    return path


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table: arm, MAP@R and Recall@1 as mean ± std."""
    lines = ["| arm | MAP@R | Recall@1 |", "|---|---|---|"]
    for row in results:
        s = row["summary"]
        cells = [f"{s[k]['mean']:.4f} ± {s[k]['std']:.4f}" for k in ("map@r", "recall@1")]
        lines.append(f"| {row['arm']} | {' | '.join(cells)} |")
    return "\n".join(lines)


def parse_arm(text: str) -> Arm:
    """``name=config.yaml[,a.b=c,...]`` -> :class:`Arm`."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(
            f"--arm: expected NAME=CONFIG[,KEY=VALUE...], got {text!r}"
        )
    config, *overrides = rest.split(",")
    return Arm(name, config, tuple(overrides))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="result file name (without .json)")
    parser.add_argument("--arm", type=parse_arm, action="append", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run_study(args.name, args.arm, args.seeds, args.set)


if __name__ == "__main__":
    main()
