"""CCP on the zero-shot glyph benchmark: each of the paper's four base losses (C1, C2,
multi-similarity, triplet; ``configs/glyphs/ccp_<loss>.yaml``) with and without chance-constrained
proxies, several seeds, test MAP@R and Recall@1 on the unseen characters of the checkpoint
selected on the validation characters (:mod:`benchmarks.glyph_study`).

Two regimes:

- ``scratch``: the small CNN trained from random weights, the configs' Adam 2e-3 with a cosine
  schedule, ``--steps`` 250. Arms ``base`` (``method.name=none``), ``ccp`` (the paper: initial
  proxies by k-center from the untrained network) and ``ccp_random`` (random initial proxies,
  k-center from the first round switch on).
- ``finetune``, the paper's regime of a pretrained network at a small constant learning rate:
  for each seed the CNN is first trained with multi-similarity for ``--pretrain-steps`` (the
  checkpoint selected on validation), then every arm starts from those weights with Adam
  ``--finetune-lr`` constant for ``--steps`` (300). The pretraining uses the same training
  characters (there is no separate source domain here); the test characters stay unseen.

Validation every 25 steps in both, so CCP rounds can end (patience 3). One torch thread per run.
Writes ``benchmarks/results/ccp_glyphs_<regime>.json``.

    python benchmarks/bench_ccp_glyphs.py --regime scratch --arms base ccp ccp_random
    python benchmarks/bench_ccp_glyphs.py --regime finetune --arms base ccp
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.glyph_study import Arm, budget, run_study
from dmlkit.config import load_config
from dmlkit.training import Trainer, load_checkpoint

LOSSES = ("c1", "c2", "ms", "triplet")
ARMS = {
    "base": ("method.name=none", "method.options={}"),
    "ccp": ("method.options.initial=kcenter",),
    "ccp_random": ("method.options.initial=random",),
}
EVAL_EVERY = 25


def pretrain(seed: int, steps: int, out_dir: Path) -> Path:
    """Train ``configs/glyphs/ms.yaml`` for ``steps`` with ``seed``; save the weights of the
    checkpoint selected on validation to ``out_dir/pretrained_seed<seed>.pt``."""
    path = out_dir / f"pretrained_seed{seed}.pt"
    overrides = [*budget(steps, max(steps // 4, 1), steps, 0), f"seed={seed}",
                 f"output.dir={out_dir}", "output.report=false"]  # fmt: skip
    config = load_config(Path(__file__).resolve().parents[1] / "configs/glyphs/ms.yaml", overrides)
    run_dir = out_dir / f"pretrain_seed{seed}"
    Trainer(config, run_dir).fit()
    torch.save(load_checkpoint(run_dir / "checkpoints" / "best.pt")["model"], path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regime", choices=["scratch", "finetune"], required=True)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=["base", "ccp"])
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="default: 250 (scratch), 300 (finetune)")
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--finetune-lr", type=float, default=2e-4)
    parser.add_argument("--name", help="result name (default: ccp_glyphs_<regime>)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = args.steps or (250 if args.regime == "scratch" else 300)
    common = budget(steps, EVAL_EVERY, steps, 0)
    meta: dict[str, object] = {"regime": args.regime}
    with tempfile.TemporaryDirectory() as tmp:
        if args.regime == "finetune":
            for seed in args.seeds:
                pretrain(seed, args.pretrain_steps, Path(tmp))
            common += [f"model.pretrained={tmp}/pretrained_seed{{seed}}.pt",
                       f"optimizer.lr={args.finetune_lr}", "schedule.name=constant"]  # fmt: skip
            meta |= {"pretrain": {"config": "configs/glyphs/ms.yaml", "steps": args.pretrain_steps}}
        arms = [
            Arm(f"{loss}_{arm}", f"configs/glyphs/ccp_{loss}.yaml", ARMS[arm])
            for loss in args.losses
            for arm in args.arms
        ]
        run_study(args.name or f"ccp_glyphs_{args.regime}", arms, args.seeds, common, meta)


if __name__ == "__main__":
    main()
