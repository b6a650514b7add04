"""Shared characteristics on the glyph zero-shot benchmark: the margin loss alone against margin +
shared task with each shared sampler, same number of iterations, several seeds.

Every run trains ``configs/glyphs/margin.yaml`` (one 128-d head) or ``configs/glyphs/sharing.yaml``
(128-d discriminative + 128-d shared head; ``sharing_two_step.yaml`` for the paper-era surrogate
variant, two optimizer steps per iteration) for ``--steps`` iterations on one thread, selects on
the 50 validation characters at the end and reports test MAP@R and Recall@1 on the 500 unseen
characters: of the single head (baseline), of the discriminative head and of the re-normalised
concatenation of both heads (sharing). The summary gives mean and sample standard deviation over
the seeds. Writes ``benchmarks/results/sharing.json``.

    python benchmarks/bench_sharing.py [--seeds 0 1 2] [--steps 200] [--variants margin shared_random ...]
    python benchmarks/bench_sharing.py --variants shared_random_rho0 decorrelation_only \
        --name sharing_ablation
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
from dmlkit.data import create_dataset
from dmlkit.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
GLYPHS = ROOT / "configs" / "glyphs"
# variant -> (config, overrides)
VARIANTS: dict[str, tuple[Path, list[str]]] = {
    "margin": (GLYPHS / "margin.yaml", []),
    "shared_random": (GLYPHS / "sharing.yaml", ["method.options.sampler=shared_random"]),
    "shared_neg": (GLYPHS / "sharing.yaml", ["method.options.sampler=shared_neg"]),
    "shared_full": (GLYPHS / "sharing.yaml", ["method.options.sampler=shared_full"]),
    "surrogate_two_step": (GLYPHS / "sharing_two_step.yaml", []),
    # ablations of shared_random: without the decorrelation, and the decorrelation alone
    "shared_random_rho0": (GLYPHS / "sharing.yaml", ["method.options.rho=0"]),
    "decorrelation_only": (GLYPHS / "sharing.yaml", ["method.options.alpha=0"]),
}
DEFAULT_VARIANTS = ["margin", "shared_random", "shared_neg", "shared_full", "surrogate_two_step"]
METRICS = ("map@r", "recall@1")


def budget(steps: int) -> list[str]:
    """The common budget: ``steps`` iterations, one evaluation at the end, one thread."""
    return [
        f"train.steps={steps}",
        f"train.eval_every={steps}",
        f"train.checkpoint_every={steps}",
        f"schedule.warmup_steps={max(steps // 10, 1)}",
        "train.num_threads=1",
        "train.progress=false",
        "eval.metrics=[recall, map@r]",
        "eval.ks=[1]",
        "eval.before=false",
        "output.report=false",
        "output.embeddings=false",
    ]


def run(variant: str, seed: int, steps: int, tmp: Path) -> dict[str, Any]:
    """Train one variant with one seed; its test metrics per evaluated embedding and times."""
    path, overrides = VARIANTS[variant]
    extra = [] if variant == "margin" else ["method.options.report=[concat]"]
    config = load_config(
        path, [*budget(steps), *overrides, *extra, f"seed={seed}", f"output.dir={tmp}"]
    )
    start = time.perf_counter()
    metrics = Trainer(config, tmp / f"{variant}-{seed}").fit()
    wall_s = time.perf_counter() - start
    best = metrics["best"]
    head = "single" if variant == "margin" else "discriminative"
    test = {head: {m: best[m] for m in METRICS}}
    if variant != "margin":
        test["concat"] = {m: best[f"concat/{m}"] for m in METRICS}
    return {"test": test, "wall_s": wall_s, "train_time_s": metrics["train_time_s"]}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation of each view's metrics over the seeds."""
    summary: dict[str, Any] = {}
    for view in runs[0]["test"]:
        summary[view] = {}
        for metric in METRICS:
            values = [r["test"][view][metric] for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[view][metric] = {"mean": statistics.fmean(values), "std": std}
    summary["wall_s"] = statistics.fmean(r["wall_s"] for r in runs)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--name", default="sharing", help="result file name (without .json)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    base = load_config(VARIANTS["margin"][0])
    create_dataset(base.data.name, "test", root=base.data.root, **base.data.options)  # cache
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            runs = []
            for seed in args.seeds:
                runs.append(run(variant, seed, args.steps, Path(tmp)))
                shown = {v: round(m["map@r"], 4) for v, m in runs[-1]["test"].items()}
                print(f"{variant} seed {seed}: MAP@R {shown} in {runs[-1]['wall_s']:.0f} s")
            results[variant] = {"runs": runs, "summary": summarise(runs)}
    result = {
        "benchmark": "zero-shot glyphs (500 unseen characters): margin vs margin + shared task",
        "configs": {v: str(VARIANTS[v][0].relative_to(ROOT)) for v in args.variants},
        "overrides": {v: VARIANTS[v][1] for v in args.variants},
        "budget": budget(args.steps),
        "steps": args.steps,
        "seeds": args.seeds,
        "torch_threads": torch.get_num_threads(),
        "note": (
            "same number of iterations for every variant; surrogate_two_step takes two optimizer "
            "steps (two forward passes) per iteration, see wall_s. Model selected on the validation "
            "characters (one evaluation, at the end). Sharing: alpha 0.3, rho 1500 (DiVA's CUB "
            "values), not tuned for glyphs."
        ),
        "results": results,
    }
    path = write_result(args.name, result)
    for variant, entry in results.items():
        parts = []
        for view, values in entry["summary"].items():
            if view == "wall_s":
                continue
            m, r = values["map@r"], values["recall@1"]
            parts.append(
                f"{view} MAP@R {m['mean']:.4f} ± {m['std']:.4f}, R@1 {r['mean']:.4f} ± {r['std']:.4f}"
            )
        print(f"{variant}: {'; '.join(parts)}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
