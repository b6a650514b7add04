"""The ``dmlkit`` command.

    dmlkit train [CONFIG] [--set a.b=c ...] [--resume [RUN_DIR]]
    dmlkit eval CHECKPOINT [--split test|val] [--set a.b=c ...] [--json OUT]
    dmlkit embed CHECKPOINT --out emb.npy|emb.npz [--split test|val] [--set a.b=c ...]
    dmlkit report RUN_DIR
    dmlkit protocol CONFIG [--set a.b=c ...]
    dmlkit list

``dmlkit train`` without CONFIG trains the embedded demo (a small CNN on scikit-learn's digits
with the multi-similarity loss) and prints its before/after table. Errors in the input (config,
paths, names) are reported in one line on stderr with exit status 2; ``--traceback`` shows the
full trace instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from dmlkit.config import ConfigError, ExperimentConfig, load_config
from dmlkit.training.checkpoint import CheckpointError

if TYPE_CHECKING:
    from dmlkit.data import DMLDataset
    from dmlkit.methods import TrainingMethod

ZERO_SHOT_HINT = (
    "note: the test split holds out IMAGES of the training classes, not classes: this shows that "
    "training works on a closed set, it is not a zero-shot result. The zero-shot benchmark "
    "(unseen characters) is: dmlkit train configs/glyphs/ms.yaml"
)


def _resume_target(args: argparse.Namespace) -> tuple[ExperimentConfig, Path]:
    """Config and run folder of ``train --resume`` (see :func:`cmd_train`)."""
    from dmlkit.training import latest_run_dir

    if args.resume != "latest":
        run_dir = Path(args.resume)
        source = args.config if args.config is not None else run_dir / "config.yaml"
        return load_config(source, args.set), run_dir
    config = load_config(args.config, args.set)
    return config, latest_run_dir(config.output)


def cmd_train(args: argparse.Namespace) -> int:
    """Train CONFIG (default: the embedded demo) into a new run folder, or resume one.

    ``--resume RUN_DIR`` continues RUN_DIR (with its saved config unless CONFIG is given);
    ``--resume`` alone continues the newest run of the config's ``output.dir``/``output.name``.
    Under ``torchrun`` every process trains its share (``dmlkit.training.distributed``); rank 0
    chooses the run folder and alone prints and writes.
    """
    from dmlkit.training import Trainer, metrics_table, new_run_dir
    from dmlkit.training.build import resolve_device
    from dmlkit.training.distributed import init_distributed

    if args.resume is not None:
        config, run_dir = _resume_target(args)
    else:
        config = load_config(args.config, args.set)
    context = init_distributed(resolve_device(config.train.device))
    try:
        if args.resume is None:
            run_dir = new_run_dir(config.output) if context.is_main else Path()
        run_dir = context.broadcast_object(run_dir)
        trainer = Trainer(config, run_dir, resume=args.resume is not None)
        splits = trainer.splits
        if context.is_main:
            print(
                f"{'resuming' if args.resume is not None else 'training'} {config.data.name} "
                f"({len(splits.train)} train images, {splits.train.num_classes} classes; "
                f"{len(splits.test)} test images, {splits.test.num_classes} classes), "
                f"{config.model.name}, loss {config.loss.name}, {config.train.steps} steps "
                f"-> {run_dir}"
                + (f" ({context.world_size} processes)" if context.is_distributed else "")
            )
            if set(splits.test.class_names) <= set(splits.train.class_names):
                print(ZERO_SHOT_HINT)
        metrics = trainer.fit()
    finally:
        context.close()
    if not context.is_main:
        return 0
    print(metrics_table(metrics))
    if trainer.config.output.report:
        from dmlkit.report import build_report

        report = build_report(run_dir, dataset=splits.test)
        print(f"report: {report}")
    print(f"run folder: {run_dir}")
    return 0


def _embed_split(
    args: argparse.Namespace,
) -> tuple[Tensor, Tensor, ExperimentConfig, DMLDataset, TrainingMethod]:
    """Model outputs, labels, config and dataset of ``args.split`` under ``args.checkpoint``'s
    model, and the run's training method (which decides the evaluated view of the outputs)."""
    from dmlkit.training.build import (
        build_method,
        build_split,
        model_from_checkpoint,
        resolve_device,
    )
    from dmlkit.training.evaluate import embed_dataset

    model, config = model_from_checkpoint(args.checkpoint, args.set)
    device = resolve_device(config.train.device)
    dataset = build_split(config.data, args.split, train=False)
    emb, labels = embed_dataset(
        model.to(device),
        dataset,
        config.eval.batch_size,
        device,
        config.train.amp,
        config.data.num_workers,
        progress=config.train.progress,
    )
    num_classes = build_split(config.data, "train", train=False).num_classes
    method = build_method(config.method, num_classes, config.model.embedding_dim, config.seed)
    return emb, labels, config, dataset, method


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate the model of CHECKPOINT on a split of its dataset and print the metrics (with a
    training method's further views, e.g. a two-head model's heads, as ``view/metric``)."""
    from dmlkit.training.evaluate import COUNTS, score_views

    emb, labels, config, dataset, method = _embed_split(args)
    metrics = score_views(method, emb, labels, config.eval, config.seed)
    print(f"{config.data.name} {args.split}: {len(dataset)} images, {dataset.num_classes} classes")
    for name, value in metrics.items():
        shown = f"{int(value)}" if name in COUNTS else f"{100 * value:.2f}"
        print(f"{name:<24}{shown:>10}")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Write the embeddings of a split, the view of the model output the run evaluates (a
    two-head model's evaluated head): ``.npy`` holds emb (N, D) float32 with the labels in
    ``<stem>.labels.npy``; ``.npz`` holds emb, labels and index."""
    out = Path(args.out)
    if out.suffix not in (".npy", ".npz"):
        raise ValueError(f"--out: expected a .npy or .npz file name, got {out}")
    outputs, labels, _, _, method = _embed_split(args)
    emb_np = method.eval_views(outputs)[0].numpy().astype(np.float32)
    labels_np = labels.numpy().astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(out, emb=emb_np, labels=labels_np, index=np.arange(len(labels_np)))
        print(f"wrote {out}: emb {emb_np.shape}, labels, index")
    else:
        labels_path = out.with_name(f"{out.stem}.labels.npy")
        np.save(out, emb_np)
        np.save(labels_path, labels_np)
        print(f"wrote {out}: emb {emb_np.shape}; labels: {labels_path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Build the report of RUN_DIR."""
    from dmlkit.report import build_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "metrics.json").is_file():
        raise FileNotFoundError(f"{run_dir}: expected a finished run folder with metrics.json")
    print(f"report: {build_report(run_dir)}")
    return 0


def cmd_protocol(args: argparse.Namespace) -> int:
    """Run the Reality-Check protocol of CONFIG (an experiment config with a ``protocol``
    section, see :mod:`dmlkit.protocol`) into a new folder of ``output.dir``/``output.name``
    and print its results table."""
    from dmlkit.protocol.runner import run_protocol
    from dmlkit.protocol.settings import load_protocol
    from dmlkit.training import new_run_dir

    protocol, config = load_protocol(args.config, args.set)
    out_dir = new_run_dir(config.output)
    print(f"protocol: {protocol.folds} folds x seeds {protocol.seeds} -> {out_dir}")
    run_protocol(protocol, config, out_dir)
    print((out_dir / "results.md").read_text())
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print the registered datasets, transforms, models, losses and training methods."""
    from dmlkit.data import DATASETS, TRANSFORMS
    from dmlkit.losses import LOSSES
    from dmlkit.methods import METHODS
    from dmlkit.models import MODELS

    for title, registry in (
        ("datasets", DATASETS),
        ("transforms", TRANSFORMS),
        ("models", MODELS),
        ("losses", LOSSES),
        ("methods", METHODS),
    ):
        print(f"{title}: {', '.join(registry.names())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmlkit", description="Deep metric learning: train, evaluate, embed, report."
    )
    parser.add_argument("--traceback", action="store_true", help="show the full trace of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_overrides(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, for example --set optimizer.lr=1e-4 (repeatable)",
        )

    train = sub.add_parser("train", help="train an experiment (no CONFIG: the embedded demo)")
    train.add_argument("config", nargs="?", help="YAML config (default: the embedded demo)")
    add_overrides(train)
    train.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_DIR",
        help="continue RUN_DIR from its last checkpoint (no value: the newest run of the config)",
    )
    train.set_defaults(func=cmd_train)

    for name, func, text in (
        ("eval", cmd_eval, "evaluate a checkpoint on a split of its dataset"),
        ("embed", cmd_embed, "write the embeddings of a split"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("checkpoint", help="a run's checkpoints/best.pt or last.pt")
        cmd.add_argument("--split", default="test", choices=("test", "val", "train"))
        add_overrides(cmd)
        cmd.set_defaults(func=func)
        if name == "eval":
            cmd.add_argument("--json", help="also write the metrics to this JSON file")
        else:
            cmd.add_argument("--out", required=True, help="output .npy or .npz file")

    report = sub.add_parser("report", help="build the report of a finished run")
    report.add_argument("run_dir")
    report.set_defaults(func=cmd_report)

    protocol = sub.add_parser(
        "protocol", help="k-fold Reality-Check protocol: mean ± CI over seeds on the test classes"
    )
    protocol.add_argument("config", help="YAML config with a protocol section")
    add_overrides(protocol)
    protocol.set_defaults(func=cmd_protocol)

    listing = sub.add_parser("list", help="list the registered datasets, models and losses")
    listing.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dmlkit`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, CheckpointError, ValueError, KeyError, FileNotFoundError,
            FileExistsError, ImportError) as err:  # fmt: skip
        if args.traceback:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"dmlkit: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dmlkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
