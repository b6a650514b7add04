"""The fair study of the four methods on the zero-shot glyph benchmark, with the protocol runner.

Every arm (a method, or a base loss alone) is run by :func:`dmlkit.protocol.runner.run_protocol`
under one budget:

- data: ``configs/glyphs`` with the serif faces held out of training (``holdout_faces: serif``),
  so each arm is scored on the unseen test characters (leave-one-out over all faces) and on the
  style shift (held-out serif renderings queried against the gallery of the other faces);
- ``--folds`` class-disjoint folds of the training characters (validation MAP@R selects, the test
  characters never do), ``--steps`` steps per model (validation every ``steps / 8``), one torch
  thread per run, one run at a time;
- ``--trials`` trials of a search on the validation folds (seed 0): the first trial is the arm's
  published values (``include_config``), the others are drawn by Optuna's seeded TPE (random for
  so few trials) from the arm's space: its base loss's parameters, the method's own parameters
  and the learning rate; a base arm gets the same number of trials on its own parameters;
- then ``--seeds`` seeds with the chosen values: test MAP@R and P@1 with 95% Student-t intervals,
  separated (mean of the fold models) and concatenated (the fold models' embeddings joined), for
  every view of a two-head model (``shared``, ``concat``) and for the style shift
  (``query_gallery``).

Arms run in the priority order of :data:`ARMS`. Each arm's protocol result is written as soon as it
finishes to ``benchmarks/results/glyph_fair_study/<arm>.json`` and ``.md`` (runs, search trials,
wall time), and ``benchmarks/results/glyph_fair_study.json`` / ``.md`` (every finished arm, and
each method's gain over its base with a Welch 95% interval over the seeds) are rewritten, so a
study cut off keeps what it measured; a restarted study skips the arms already written. No arm
starts after ``--stop-after-hours``.

    python benchmarks/glyph_fair_study.py --steps 500 --trials 3 --seeds 0 1 2 \\
        --runs-dir /tmp/glyph-fair-study [--arms dro_mean ms ...] [--stop-after-hours 8]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, machine_info
from dmlkit.config import load_config
from dmlkit.protocol.runner import run_protocol
from dmlkit.protocol.settings import ProtocolConfig, SearchConfig
from dmlkit.protocol.stats import student_t_quantile

ROOT = Path(__file__).resolve().parents[1]
NAME = "glyph_fair_study"
METRICS = ["map@r", "precision@1"]
HOLDOUT = "serif"

LR = {"optimizer.lr": {"low": 5.0e-4, "high": 5.0e-3, "log": True}}
MARGIN_TERM = {  # the DRO paper's margin base loss: pos [a + g - s]+, neg [a - g + s]+
    "loss.options.alpha": {"low": 0.05, "high": 0.4},
    "loss.options.gamma": {"low": 0.3, "high": 0.7},
}
MS = {
    "loss.options.alpha": {"low": 0.5, "high": 4.0},
    "loss.options.beta": {"low": 10.0, "high": 80.0},
    "loss.options.threshold": {"low": 0.3, "high": 1.0},
    "loss.options.epsilon": {"choices": [None, 0.1]},
}
MARGIN_LOSS = {
    "loss.options.margin": {"low": 0.05, "high": 0.4},
    "optimizer.loss_lr": {"low": 1.0e-4, "high": 5.0e-3, "log": True},
}
SHARING = {
    "method.options.alpha": {"low": 0.05, "high": 1.0, "log": True},
    "method.options.rho": {"low": 10.0, "high": 3000.0, "log": True},
}
C2 = {
    "loss.options.pos_margin": {"low": -0.4, "high": 0.0},  # -m+ (s = -d)
    "loss.options.neg_margin": {"low": -1.0, "high": -0.2},  # -m-
}
C1 = {"loss.options.neg_margin": {"low": 0.2, "high": 0.8}}
TRIPLET = {"loss.options.margin": {"low": 0.02, "high": 0.3}}
CCP = {
    "method.options.lam": {"low": 1.0e-5, "high": 1.0e-2, "log": True},
    "method.options.per_class": {"choices": [2, 4, 8]},
}
NO_METHOD = ("method.name=none", "method.options={}")
MS_VALUES = "loss.options={alpha: 2.0, beta: 40.0, threshold: 0.5, epsilon: null, similarity: dot}"
PN_MARGIN = "loss.options={k: 100, base: margin, alpha: 0.2, gamma: 0.5}"


@dataclass(frozen=True)
class Arm:
    """One arm: ``config`` with ``overrides``, the searched ``space`` and the ``bases`` its
    gains are measured against."""

    name: str
    config: str
    space: Mapping[str, Any]
    overrides: tuple[str, ...] = ()
    bases: tuple[str, ...] = ()
    notes: str = ""


def _space(*parts: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out.update(part)
    return out


G = "configs/glyphs/"
ARMS: tuple[Arm, ...] = (
    # first the pairs the study is about, one of each method family before the next:
    # DRO-TopK vs the plain mean, sharing (shared_random) vs margin, CCP-C2 vs C2, then MS,
    # CCP-MS vs MS and DRO-KL (vs the plain mean and MS)
    Arm("dro_mean", G + "dro_mean.yaml", _space(LR, MARGIN_TERM), notes="plain mean, margin base"),
    Arm(
        "dro_topk",
        G + "dro_topk.yaml",
        _space(LR, MARGIN_TERM, {"loss.options.k": {"low": 32, "high": 2048, "log": True}}),
        bases=("dro_mean", "ms"),
    ),
    Arm("margin", G + "margin.yaml", _space(LR, MARGIN_LOSS)),
    Arm("sharing_random", G + "sharing.yaml", _space(LR, MARGIN_LOSS, SHARING), bases=("margin",)),
    Arm("c2", G + "ccp_c2.yaml", _space(LR, C2), NO_METHOD),
    Arm("ccp_c2", G + "ccp_c2.yaml", _space(LR, C2, CCP), bases=("c2",)),
    Arm(
        "ms",
        G + "ccp_ms.yaml",
        _space(LR, MS),
        (*NO_METHOD, MS_VALUES),
        notes="multi-similarity; starts from the CCP supplement's CUB values (beta 40, lambda "
        "0.5, no mining), which beat the paper's (beta 50, lambda 1, epsilon 0.1) on glyphs",
    ),
    Arm("ccp_ms", G + "ccp_ms.yaml", _space(LR, MS, CCP), (MS_VALUES,), bases=("ms",)),
    Arm(
        "dro_kl",
        G + "dro_kl.yaml",
        _space(LR, MARGIN_TERM, {"loss.options.t": {"low": 0.02, "high": 1.0, "log": True}}),
        bases=("dro_mean", "ms"),
    ),
    # then DRO-TopK-PN, the other shared samplers, CCP with C1 and triplet
    Arm(
        "dro_topk_pn",
        G + "dro_topk_pn.yaml",
        _space(LR, MARGIN_TERM, {"loss.options.k": {"low": 16, "high": 256, "log": True}}),
        (PN_MARGIN,),
        ("dro_mean", "ms"),
        notes="margin base (the paper's DRO-TopK-PN_M), so that dro_mean is its base",
    ),
    Arm(
        "sharing_neg",
        G + "sharing.yaml",
        _space(LR, MARGIN_LOSS, SHARING),
        ("method.options.sampler=shared_neg",),
        ("margin",),
    ),
    Arm(
        "sharing_full",
        G + "sharing.yaml",
        _space(LR, MARGIN_LOSS, SHARING),
        ("method.options.sampler=shared_full",),
        ("margin",),
    ),
    Arm(
        "sharing_surrogate",
        G + "sharing_two_step.yaml",
        _space(LR, MARGIN_LOSS, SHARING),
        bases=("margin",),
        notes="paper-era two-step form: two optimizer steps per step",
    ),
    Arm("c1", G + "ccp_c1.yaml", _space(LR, C1), NO_METHOD),
    Arm("ccp_c1", G + "ccp_c1.yaml", _space(LR, C1, CCP), bases=("c1",)),
    Arm("triplet", G + "ccp_triplet.yaml", _space(LR, TRIPLET), NO_METHOD),
    Arm("ccp_triplet", G + "ccp_triplet.yaml", _space(LR, TRIPLET, CCP), bases=("triplet",)),
)
ARM_NAMES = tuple(a.name for a in ARMS)


def budget(steps: int) -> list[str]:
    """The overrides every arm shares: steps, validation every ``steps / 8`` (CCP's rounds end
    after 3 validations without improvement), a checkpoint at the end, warm-up over the first
    fifth (at most 100), the style-shift data, one thread, retrieval metrics only."""
    every = max(steps // 8, 1)
    return [
        f"train.steps={steps}",
        f"train.eval_every={every}",
        f"train.checkpoint_every={steps}",
        f"train.log_every={every}",
        f"schedule.warmup_steps={min(100, steps // 5)}",
        f"data.options.holdout_faces={HOLDOUT}",
        "data.val_classes=0",
        "train.num_threads=1",
        "train.progress=false",
        "train.patience=null",
        "eval.metrics=[recall, precision@1, map@r]",
        "eval.ks=[1]",
        "eval.before=false",
        "eval.select_metric=map@r",
        "eval.periodic_test=false",
        "output.report=false",
    ]


def run_arm(
    arm: Arm, args: argparse.Namespace, common: Sequence[str], results_dir: Path
) -> dict[str, Any]:
    """The protocol of ``arm`` (search, then the seeds), written to ``results_dir/<arm>.json``
    and ``.md``; returns the result."""
    config = load_config(ROOT / arm.config, [*common, *arm.overrides, *args.set])
    search = SearchConfig(trials=args.trials, seed=0, space=dict(arm.space), include_config=True)
    protocol = ProtocolConfig(args.folds, list(args.seeds), 0.95, METRICS, search)
    start = time.perf_counter()
    result = run_protocol(protocol, config, Path(args.runs_dir) / arm.name)
    wall_s = time.perf_counter() - start
    out_dir = Path(args.runs_dir) / arm.name
    payload = {
        "arm": arm.name,
        "config_file": arm.config,
        "overrides": [*common, *arm.overrides, *args.set],
        "bases": list(arm.bases),
        "notes": arm.notes,
        "wall_s": wall_s,
        "torch_threads": torch.get_num_threads(),
        "machine": machine_info(),
        **result,
    }
    (results_dir / f"{arm.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    markdown = (out_dir / "results.md").read_text()
    header = (
        f"Arm `{arm.name}` of the glyph fair study ({arm.config}; {arm.notes or 'as shipped'}). "
        f"Wall time {wall_s / 60:.0f} min on {machine_info().get('cpu', 'this CPU')}, one torch "
        "thread, one run at a time.\n\n"
    )
    (results_dir / f"{arm.name}.md").write_text(header + markdown)
    return payload


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Difference of means ``mean(a) - mean(b)`` and its Welch ``level`` half width (the
    Welch-Satterthwaite degrees of freedom rounded down; ``nan`` with fewer than 2 values)."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0.0:
        return diff, 0.0
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return diff, student_t_quantile((1 + level) / 2, max(1, math.floor(dof))) * math.sqrt(va + vb)


def _values(result: Mapping[str, Any], mode: str, key: str) -> list[float]:
    return [run[mode][key] for run in result["runs"]]


def _cell(result: Mapping[str, Any], mode: str, key: str) -> str:
    est = result["summary"][mode].get(key)
    if est is None:
        return "–"
    half = est["half_width"]
    return f"{est['mean']:.4f}" + ("" if half is None else f" ± {half:.4f}")


COLUMNS = (
    ("separated", "map@r"),
    ("separated", "precision@1"),
    ("concatenated", "map@r"),
    ("separated", "query_gallery/map@r"),
    ("concatenated", "query_gallery/map@r"),
)


def summary_markdown(done: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    """The study's tables: every finished arm, the further views of two-head arms, and each
    method's gain over its bases (Welch 95% intervals over the seeds)."""
    head = " | ".join(f"{m} {k}" for m, k in COLUMNS)
    lines = [
        "# Glyph fair study",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Budget: {meta['folds']} folds, {meta['trials']} search trials per arm (the first the "
        f"arm's published values), {meta['steps']} steps per model, seeds {meta['seeds']}; serif "
        "faces held out of training. Test characters: mean ± 95% Student-t interval over the "
        "seeds; `query_gallery` = held-out serif renderings queried against the other faces. "
        f"Machine: {meta['machine']}, one torch thread per run, one run at a time.",
        "",
        "| arm | " + head + " | wall min |",
        "|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for name, result in done.items():
        cells = [_cell(result, m, k) for m, k in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {result['wall_s'] / 60:.0f} |")
    views = [(n, r) for n, r in done.items() if r.get("view_dims")]
    if views:
        lines += ["", "Two-head arms, further views (separated / concatenated MAP@R):", ""]
        lines += ["| arm | view | separated | concatenated | style shift separated |"]
        lines += ["|---|---|---|---|---|"]
        for name, result in views:
            for view in result["view_dims"]:
                key = f"{view}/map@r"
                shift = f"{view}/query_gallery/map@r"
                lines.append(
                    f"| {name} | {view} | {_cell(result, 'separated', key)} | "
                    f"{_cell(result, 'concatenated', key)} | {_cell(result, 'separated', shift)} |"
                )
    gains = [(n, b) for n, r in done.items() for b in r["bases"] if b in done]
    if gains:
        lines += [
            "",
            "Gain of each method over its base (difference of means, Welch 95% interval):",
            "",
            "| method | base | " + " | ".join(f"Δ {m} {k}" for m, k in COLUMNS) + " |",
            "|---|---|" + "---|" * len(COLUMNS),
        ]
        for name, base in gains:
            cells = []
            for mode, key in COLUMNS:
                a, b = _values(done[name], mode, key), _values(done[base], mode, key)
                diff, half = welch(a, b)
                cells.append(f"{diff:+.4f}" + ("" if math.isnan(half) else f" ± {half:.4f}"))
            lines.append(f"| {name} | {base} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(
    done: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any], results_root: Path
) -> None:
    """Rewrite ``glyph_fair_study.json`` (per arm: summary, search, wall time) and ``.md``."""
    arms = {
        name: {k: r[k] for k in ("summary", "search", "bases", "wall_s", "dims", "view_dims")}
        for name, r in done.items()
    }
    payload = {"benchmark": "glyph fair study", **meta, "arms": arms}
    (results_root / f"{NAME}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (results_root / f"{NAME}.md").write_text(summary_markdown(done, meta))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=ARM_NAMES, default=list(ARM_NAMES))
    parser.add_argument("--runs-dir", required=True, help="folder for the trained runs")
    parser.add_argument("--stop-after-hours", type=float, default=math.inf)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help="(smoke tests elsewhere)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results_root = Path(args.results_dir)
    results_dir = results_root / NAME
    results_dir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    meta = {
        "command": "python " + " ".join(sys.argv),
        "steps": args.steps,
        "trials": args.trials,
        "folds": args.folds,
        "seeds": args.seeds,
        "holdout_faces": HOLDOUT,
        "machine": f"{info.get('cpu', '?')}, {info.get('cpu_count', '?')} cores (shared)",
        "complete": False,
    }
    common = budget(args.steps)
    done: dict[str, dict[str, Any]] = {}
    for name in ARM_NAMES:  # arms written by an earlier, cut-off run count as done
        path = results_dir / f"{name}.json"
        if name in args.arms and path.is_file():
            done[name] = json.loads(path.read_text())
    start = time.perf_counter()
    for arm in ARMS:
        if arm.name not in args.arms or arm.name in done:
            continue
        if (time.perf_counter() - start) / 3600 > args.stop_after_hours:
            print(f"{NAME}: {args.stop_after_hours} h passed, {arm.name} and later not run")
            break
        print(f"{NAME}: arm {arm.name} ...", flush=True)
        done[arm.name] = run_arm(arm, args, common, results_dir)
        write_summary(done, meta, results_root)
        print(f"{NAME}: arm {arm.name} done in {done[arm.name]['wall_s'] / 60:.1f} min", flush=True)
    meta["complete"] = all(name in done for name in args.arms)
    write_summary(done, meta, results_root)
    print((results_root / f"{NAME}.md").read_text())


if __name__ == "__main__":
    main()
