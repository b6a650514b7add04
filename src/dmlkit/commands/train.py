"""``dmlkit train [CONFIG] [--set a.b=c ...] [--resume [RUN_DIR]]``: train an experiment.

Without CONFIG it trains the embedded demo (a small CNN on scikit-learn's digits with the
multi-similarity loss) and prints its before/after table. Under ``torchrun`` every process trains
its share (:mod:`dmlkit.training.distributed`); rank 0 chooses the run folder and alone prints and
writes. A training that finished is never reported as a failure: when the report cannot be built
(matplotlib missing, the test images gone) a one-line notice says so and how to build it later.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from dmlkit.config import ExperimentConfig, load_config
from dmlkit.training import Trainer, TrainingInterrupted, latest_run_dir, metrics_table, new_run_dir
from dmlkit.training.build import resolve_device
from dmlkit.training.distributed import init_distributed, peer_failure
from dmlkit.training.run_metrics import RunMetrics

ZERO_SHOT_HINT = (
    "note: the test split holds out IMAGES of the training classes, not classes: this shows that "
    "training works on a closed set, it is not a zero-shot result. The zero-shot benchmark "
    "(unseen characters) is: dmlkit train configs/glyphs/ms.yaml"
)


def _resume_target(args: argparse.Namespace) -> tuple[ExperimentConfig, Path]:
    """Config and run folder of ``train --resume`` (see :func:`run`)."""
    if args.resume != "latest":
        run_dir = Path(args.resume)
        source = args.config if args.config is not None else run_dir / "config.yaml"
        return load_config(source, args.set), run_dir
    config = load_config(args.config, args.set)
    return config, latest_run_dir(config.output)


def _build_report(run_dir: Path, trainer: Trainer) -> None:
    """Write the run's report, or print a one-line notice saying why not and how to retry."""
    retry = f"build it later with: dmlkit report {run_dir}"
    try:
        from dmlkit.reporting import build_report

        print(f"report: {build_report(run_dir, dataset=trainer.splits.test)}")
    except ImportError:
        print(f"report: skipped, it needs matplotlib (pip install 'dmlkit[plots]'); {retry}")
    except (OSError, ValueError, RuntimeError) as err:
        print(f"report: skipped ({type(err).__name__}: {err}); {retry}", file=sys.stderr)


def _continue_hint(err: TrainingInterrupted, args: argparse.Namespace, run_dir: Path) -> str:
    """What to run to continue an interrupted training."""
    if err.checkpoint_step is None:
        again = ["dmlkit train", *([args.config] if args.config else [])]
        again += [shlex.join(["--set", value]) for value in args.set]
        return f"no checkpoint was written yet; start again with: {' '.join(again)}"
    return (
        f"{run_dir / 'checkpoints' / 'last.pt'} holds step {err.checkpoint_step}; continue with: "
        f"dmlkit train --resume {run_dir}"
    )


def run(args: argparse.Namespace) -> int:
    """Train CONFIG (default: the embedded demo) into a new run folder, or resume one.

    ``--resume RUN_DIR`` continues RUN_DIR (with its saved config unless CONFIG is given);
    ``--resume`` alone continues the newest run of the config's ``output.dir``/``output.name``.
    """
    if args.resume is not None:
        config, run_dir = _resume_target(args)
    else:
        config = load_config(args.config, args.set)
    context = init_distributed(resolve_device(config.train.device), config.train.dist_timeout)
    try:
        if args.resume is None:
            run_dir = new_run_dir(config.output) if context.is_main else Path()
        run_dir = context.broadcast_object(run_dir)
        trainer = Trainer(config, run_dir, resume=args.resume is not None)
        splits = trainer.splits
        if context.is_main:
            print(
                f"{'resuming' if trainer.resume else 'training'} {config.data.name} "
                f"({len(splits.train)} train images, {splits.train.num_classes} classes; "
                f"{len(splits.test)} test images, {splits.test.num_classes} classes), "
                f"{config.model.name}, loss {config.loss.name}, {config.train.steps} steps "
                f"-> {run_dir}"
                + (f" ({context.world_size} processes)" if context.is_distributed else ""),
                flush=True,
            )
            if set(splits.test.class_names) <= set(splits.train.class_names):
                print(ZERO_SHOT_HINT, flush=True)
        metrics = trainer.fit()
    except TrainingInterrupted as err:
        if context.is_main:
            print(
                f"\ndmlkit: interrupted at step {err.step}; {_continue_hint(err, args, run_dir)}",
                file=sys.stderr,
            )
        return 130
    except KeyboardInterrupt:
        if context.is_main:
            print("\ndmlkit: interrupted before training started", file=sys.stderr)
        return 130
    except RuntimeError as err:
        message = peer_failure(err, context, config.train.dist_timeout)
        if message is None:
            raise
        print(f"dmlkit: error: {message}", file=sys.stderr, flush=True)
        # The process group of a run whose peer died or hangs cannot be torn down: leaving it,
        # or the interpreter's own exit, can abort in gloo's threads (SIGABRT instead of
        # status 1). Logs and checkpoints are already flushed and written atomically.
        sys.stdout.flush()
        os._exit(1)
    finally:
        context.close()
    if not context.is_main:
        return 0
    print(metrics_table(RunMetrics.from_dict(metrics)))
    if trainer.config.output.report:
        _build_report(run_dir, trainer)
    print(f"run folder: {run_dir}")
    return 0
