"""DRO accuracy on the zero-shot glyph benchmark (unseen characters), three studies:

1. ``dro_glyphs``: DRO-TopK, DRO-KL, DRO-TopK-PN against multi-similarity and contrastive, the
   glyph configs of each (``configs/glyphs/<name>.yaml``), same budget, ``--seeds`` (3 by
   default); mean ± std of MAP@R and Recall@1 of the checkpoint selected on the validation
   characters.
2. ``dro_imbalance`` (the DRO paper's imbalance study, which goes on to 640): batches of 80 and
   320 images with m = 5 per class, so the positive/negative pair ratio falls from 4/75 to 4/315
   (a 320-image run costs four times an 80-image one on this CPU), for the plain
   mean of the pair losses (``dro_mean``), DRO-TopK (k = 2.5 B unique pairs, the ratio of
   ``configs/glyphs/dro_topk.yaml``) and DRO-KL, one seed, the same number of steps.
3. ``dro_kl_temperature``: DRO-KL at t = 0.03, 0.3 and 1 beside the study's t = 0.1, one seed
   (t -> 0 is the hardest pair, t -> inf the plain mean).

Budget: ``--steps`` steps (300), validation every ``steps / 3``, one torch thread per run, retrieval
metrics only.

    python benchmarks/bench_dro_glyphs.py [--study accuracy imbalance temperature] [--seeds 0 1 2] [--steps 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.glyph_study import Arm, budget, run_study

ACCURACY_ARMS = ("dro_topk", "dro_kl", "dro_topk_pn", "ms", "contrastive")
IMBALANCE_BATCHES = (80, 320)
TEMPERATURES = (0.03, 0.3, 1.0)
M = 5


def dro_budget(steps: int) -> list[str]:
    """The DRO studies' budget: validation (and a checkpoint) three times, warm-up over the
    first fifth of the steps (at most 100)."""
    every = max(steps // 3, 1)
    return budget(steps, every, every, min(100, steps // 5))


def imbalance_arms() -> list[Arm]:
    arms = []
    for b in IMBALANCE_BATCHES:
        batch = (f"data.batch_size={b}", f"data.m={M}")
        arms += [
            Arm(f"dro_mean_B{b}", "configs/glyphs/dro_mean.yaml", batch),
            Arm(
                f"dro_topk_B{b}",
                "configs/glyphs/dro_topk.yaml",
                (*batch, f"loss.options.k={5 * b // 2}"),
            ),
            Arm(f"dro_kl_B{b}", "configs/glyphs/dro_kl.yaml", batch),
        ]
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--study",
        nargs="+",
        choices=["accuracy", "imbalance", "temperature"],
        default=["accuracy", "imbalance", "temperature"],
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    common = dro_budget(args.steps)
    meta = {"steps": args.steps}
    if "accuracy" in args.study:
        arms = [Arm(name, f"configs/glyphs/{name}.yaml") for name in ACCURACY_ARMS]
        run_study("dro_glyphs", arms, args.seeds, common, meta)
    if "imbalance" in args.study:
        note = {
            "m": M,
            "pos_neg_ratio": {b: (M - 1) / (b - M) for b in IMBALANCE_BATCHES},
        }
        run_study("dro_imbalance", imbalance_arms(), args.seeds[:1], common, {**meta, **note})
    if "temperature" in args.study:
        arms = [
            Arm(f"dro_kl_t{t:g}", "configs/glyphs/dro_kl.yaml", (f"loss.options.t={t}",))
            for t in TEMPERATURES
        ]
        run_study("dro_kl_temperature", arms, args.seeds[:1], common, meta)


if __name__ == "__main__":
    main()
