"""CCP on the zero-shot glyph benchmark: each of the four base losses of the paper (C1, C2,
multi-similarity, triplet) trained with and without chance-constrained proxies, several seeds.

Runs ``configs/glyphs/ccp_<loss>.yaml`` as is (CCP) and with ``method.name=none`` (the base loss
alone); everything else (data, model, optimizer, steps, validation split) is identical. Each run
selects its checkpoint by validation MAP@R on held-out training characters and reports that
checkpoint's test MAP@R and P@1 on the unseen characters. The paper reports that CCP improves
MAP@R for every loss on every dataset; this records what we see here. Writes
``benchmarks/results/ccp_glyphs.json`` (per run, and mean / sample std per arm).

    python benchmarks/bench_ccp_glyphs.py --steps 300 --eval-every 25 --seeds 0 1 2 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result
from dmlkit.config import load_config
from dmlkit.methods import CCPRounds
from dmlkit.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ("c1", "c2", "ms", "triplet")
WITHOUT_CCP = ("method.name=none", "method.options={}")


def run_once(loss: str, ccp: bool, seed: int, common: list[str]) -> dict[str, Any]:
    """Train one arm with ``seed``; test metrics of the checkpoint selected on validation."""
    config_path = ROOT / "configs" / "glyphs" / f"ccp_{loss}.yaml"
    arm = [] if ccp else list(WITHOUT_CCP)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*common, *arm, f"seed={seed}", f"output.dir={tmp}", "output.report=false",
                     "output.embeddings=false", "train.progress=false", "eval.before=false"]  # fmt: skip
        start = time.perf_counter()
        trainer = Trainer(load_config(config_path, overrides), Path(tmp) / "run")
        metrics = trainer.fit()
        wall = time.perf_counter() - start
    rounds = [cb for cb in trainer.callbacks.callbacks if isinstance(cb, CCPRounds)]
    row = {
        "loss": loss,
        "ccp": ccp,
        "seed": seed,
        "test_map@r": metrics["best"]["map@r"],
        "test_precision@1": metrics["best"]["precision@1"],
        "val_map@r": metrics["best_selection_value"],
        "best_step": metrics["best_step"],
        "steps": metrics["steps"],
        "round_switch_steps": rounds[0].switch_steps if rounds else None,
        "wall_s": wall,
    }
    print(row, flush=True)
    return row


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation per (loss, ccp), and the CCP gain per loss."""
    out = []
    for loss in sorted({r["loss"] for r in rows}):
        entry: dict[str, Any] = {"loss": loss}
        for ccp in (False, True):
            arm = [r for r in rows if r["loss"] == loss and r["ccp"] == ccp]
            for key in ("test_map@r", "test_precision@1"):
                values = [r[key] for r in arm]
                label = f"{'ccp' if ccp else 'base'}_{key}"
                entry[f"{label}_mean"] = statistics.fmean(values) if values else None
                entry[f"{label}_std"] = statistics.stdev(values) if len(values) > 1 else None
        if entry["ccp_test_map@r_mean"] is not None and entry["base_test_map@r_mean"] is not None:
            entry["ccp_gain_map@r"] = entry["ccp_test_map@r_mean"] - entry["base_test_map@r_mean"]
        out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["base", "ccp"],
        choices=["base", "ccp"],
        help="train the base loss alone, with CCP, or both",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default="ccp_glyphs", help="result file name (without .json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common = [f"train.steps={args.steps}", f"train.eval_every={args.eval_every}",
              f"train.checkpoint_every={args.steps}", f"train.num_threads={args.threads}",
              "schedule.warmup_steps=0", "eval.metrics=[precision@1, map@r]", "eval.ks=[1]",
              *args.set]  # fmt: skip
    rows = []
    start = time.perf_counter()
    for seed in args.seeds:
        for loss in args.losses:
            for arm in args.arms:
                rows.append(run_once(loss, arm == "ccp", seed, common))
    payload = {
        "benchmark": "zero-shot glyphs, four base losses with and without CCP",
        "overrides": common,
        "seeds": args.seeds,
        "summary": summary(rows),
        "runs": rows,
        "wall_s": time.perf_counter() - start,
    }
    print(f"wrote {write_result(args.name, payload)}")


if __name__ == "__main__":
    main()
