"""Shared characteristics on the glyph zero-shot benchmark: the margin loss alone against margin +
shared task with each shared sampler, same number of iterations, several seeds.

Every run trains ``configs/glyphs/margin.yaml`` (one 128-d head) or ``configs/glyphs/sharing.yaml``
(128-d discriminative + 128-d shared head; ``sharing_two_step.yaml`` for the paper-era surrogate
variant, two optimizer steps per iteration) for ``--steps`` iterations on one thread, selects on
the 50 validation characters at the end and reports test MAP@R and Recall@1 on the 500 unseen
characters (:mod:`benchmarks.glyph_study`): ``map@r`` of the single head (margin) or of the
discriminative head (sharing), ``concat/map@r`` of the re-normalised concatenation of both heads.
Writes ``benchmarks/results/sharing.json``.

    python benchmarks/bench_sharing.py [--seeds 0 1 2] [--steps 200] [--variants margin shared_random ...]
    python benchmarks/bench_sharing.py --variants shared_random_rho0 decorrelation_only \
        --name sharing_ablation
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.glyph_study import Arm, budget, run_study

MARGIN, SHARING = "configs/glyphs/margin.yaml", "configs/glyphs/sharing.yaml"
CONCAT = "method.options.report=[concat]"
VARIANTS = {
    arm.name: arm
    for arm in (
        Arm("margin", MARGIN),
        Arm("shared_random", SHARING, ("method.options.sampler=shared_random", CONCAT)),
        Arm("shared_neg", SHARING, ("method.options.sampler=shared_neg", CONCAT)),
        Arm("shared_full", SHARING, ("method.options.sampler=shared_full", CONCAT)),
        Arm("surrogate_two_step", "configs/glyphs/sharing_two_step.yaml", (CONCAT,)),
        # ablations of shared_random: without the decorrelation, and the decorrelation alone
        Arm("shared_random_rho0", SHARING, ("method.options.rho=0", CONCAT)),
        Arm("decorrelation_only", SHARING, ("method.options.alpha=0", CONCAT)),
    )
}
DEFAULT_VARIANTS = ["margin", "shared_random", "shared_neg", "shared_full", "surrogate_two_step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--name", default="sharing", help="result file name (without .json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    note = (
        "same number of iterations for every variant; surrogate_two_step takes two optimizer "
        "steps (two forward passes) per iteration, see wall_s. Model selected on the validation "
        "characters (one evaluation, at the end). Sharing: alpha 0.3, rho 1500 (DiVA's CUB "
        "values), not tuned for glyphs."
    )
    arms = [VARIANTS[v] for v in args.variants]
    # one evaluation (and checkpoint) at the end, warm-up over the first tenth
    common = budget(args.steps, args.steps, args.steps, max(args.steps // 10, 1))
    run_study(args.name, arms, args.seeds, common, {"note": note})


if __name__ == "__main__":
    main()
