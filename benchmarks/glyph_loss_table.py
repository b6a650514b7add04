"""The loss catalogue on the zero-shot glyph benchmark: every registered loss at one budget.

Each loss trains ``configs/glyphs/ms.yaml`` with only ``loss.name`` changed (the loss's own
defaults; ``num_classes`` and ``embedding_dim`` from the run), 600 steps, the checkpoint selected on
the validation characters, one torch thread per run; the selected step's test MAP@R and P@1 on the
unseen characters are recorded per seed (``glyph_study.run_once``, exactly as ``dmlkit train``).

The table is written after every run to ``benchmarks/results/glyph_loss_table.json`` and ``.md``;
a restarted table skips the (loss, seed) runs already recorded, so it can be run piecewise::

    python benchmarks/glyph_loss_table.py --seeds 0 [--losses arcface supcon ...] \\
        [--stop-after-hours 2]

Losses that do not train on a labelled batch alone are listed with the reason instead of a row.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, machine_info
from benchmarks.glyph_study import Arm, budget, run_once
from dmlkit.losses import LOSSES

NAME = "glyph_loss_table"
CONFIG = "configs/glyphs/ms.yaml"
METRICS = ("map@r", "precision@1")
# losses that need something a labelled batch does not have
NOT_RUN = {
    "self_supervised": "needs two augmented views of each item (a wrapper, not a loss on labels)",
    "vicreg": "needs two augmented views of each item, not labels",
}


def _load(path: Path) -> dict[str, Any]:
    if path.is_file():
        return dict(json.loads(path.read_text(encoding="utf-8")))
    return {"benchmark": f"zero-shot glyphs: every loss on {CONFIG}", "runs": {}}


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per metric: mean, sample std (0 for one seed) and the number of seeds."""
    out: dict[str, dict[str, float]] = {}
    for key in METRICS:
        values = [r["test"][key] for r in runs if key in r["test"]]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[key] = {"mean": statistics.fmean(values), "std": std, "n": len(values)}
    return out


def _cell(stats: dict[str, float]) -> str:
    """``mean ± std`` over seeds; the value alone for one seed."""
    if stats["n"] < 2:
        return f"{stats['mean']:.3f}"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def markdown(payload: dict[str, Any]) -> str:
    """The table, best test MAP@R first: loss, family, MAP@R and P@1 (mean ± std, seeds)."""
    rows = []
    for loss, runs in payload["runs"].items():
        s = summary(runs)
        if "map@r" in s:
            rows.append((s["map@r"]["mean"], loss, s))
    lines = [
        f"Every loss on `{CONFIG}` with only `loss.name` changed: {payload['steps']} steps, "
        "selected on the validation characters, test characters never seen in training "
        f"(machine: {payload['machine']['cpu']}, 1 torch thread per run).",
        "",
        "| loss | family | test MAP@R | test P@1 | seeds | wall s / run |",
        "|---|---|---|---|---|---|",
    ]
    for _, loss, s in sorted(rows, reverse=True):
        wall = statistics.fmean(r["wall_s"] for r in payload["runs"][loss])
        cells = [_cell(s[k]) for k in METRICS]
        family = LOSSES.info(loss).family if loss in LOSSES else ""
        lines.append(
            f"| {loss} | {family} | {' | '.join(cells)} | {int(s['map@r']['n'])} | {wall:.0f} |"
        )
    for loss, runs in payload["runs"].items():
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            lines.append(f"| {loss} | {LOSSES.info(loss).family} | failed: {errors[0]} | | | |")
    for loss, reason in payload.get("not_run", {}).items():
        lines.append(f"| {loss} | {LOSSES.info(loss).family} | not run: {reason} | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--losses", nargs="+", default=None, help="default: every loss")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--stop-after-hours", type=float, default=math.inf)
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help="(smoke tests elsewhere)")
    args = parser.parse_args()
    names = args.losses or LOSSES.names()
    unknown = sorted(set(names) - set(LOSSES.names()))
    if unknown:
        parser.error(f"--losses: unknown {unknown}; registered: {', '.join(LOSSES.names())}")
    path = Path(args.results_dir) / f"{NAME}.json"
    payload = _load(path)
    payload.update(steps=args.steps, config=CONFIG, machine=machine_info())
    payload["not_run"] = {n: r for n, r in NOT_RUN.items() if n in LOSSES}
    steps = args.steps
    common = [
        *budget(steps, steps // 3, steps // 3, steps // 6),
        "eval.metrics=[map@r, precision@1]",
    ]
    start = time.monotonic()
    for loss in names:
        if loss in NOT_RUN:
            continue
        for seed in args.seeds:
            done = payload["runs"].setdefault(loss, [])
            if any(r["seed"] == seed for r in done):
                continue
            if time.monotonic() - start > args.stop_after_hours * 3600:
                print(f"{NAME}: stopped after {args.stop_after_hours} h", flush=True)
                return
            try:
                run = run_once(Arm(loss, CONFIG, (f"loss.name={loss}",)), seed, common)
            except Exception as err:  # a loss that fails to train is a finding, kept
                run = {"seed": seed, "error": f"{type(err).__name__}: {err}", "test": {}}
            done.append(run)
            print(f"{NAME} {loss} seed {seed}: {run['test'] or run.get('error')}", flush=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
            path.with_suffix(".md").write_text(markdown(payload), encoding="utf-8")


if __name__ == "__main__":
    main()
