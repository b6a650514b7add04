"""The ``dmlkit`` command: the argument parser, and the dispatch to one command module.

    dmlkit train [CONFIG] [--set a.b=c ...] [--resume [RUN_DIR]]
    dmlkit eval CHECKPOINT [--split test|val|train] [--set a.b=c ...] [--json OUT]
    dmlkit embed CHECKPOINT --out emb.npy|emb.npz [--split test|val|train] [--set a.b=c ...]
    dmlkit report RUN_DIR
    dmlkit protocol CONFIG [--set a.b=c ...]
    dmlkit convert OLD_CHECKPOINT NEW_CHECKPOINT
    dmlkit list

This module imports neither torch nor anything that does: ``dmlkit --help``, ``dmlkit CMD
--help`` and argument errors answer at once. A command's module (``dmlkit.commands.<name>``) is
imported only when that command runs, and imports what it uses. Errors in the input (config,
paths, names, files) are reported in one line on stderr with exit status 2; ``--traceback`` shows
the full trace instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from dmlkit.config import ConfigError

# The errors a command reports as one line (a wrong input, not a bug). CheckpointError,
# NonFiniteError and the distributed timeout errors are ValueError or RuntimeError subclasses
# named by their own commands.
INPUT_ERRORS = (ConfigError, ValueError, KeyError, FileNotFoundError, FileExistsError,
                IsADirectoryError, NotADirectoryError, PermissionError, ImportError)  # fmt: skip


def _add_overrides(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, for example --set optimizer.lr=1e-4 (repeatable)",
    )


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    text: str,
    target: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand run by ``target`` (``"module:function"``, taking the parsed arguments and
    returning the exit status; default ``dmlkit.commands.<name>:run``)."""
    cmd = sub.add_parser(name, help=text, description=text)
    cmd.set_defaults(target=target or f"dmlkit.commands.{name}:run")
    return cmd


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (no command module is imported)."""
    parser = argparse.ArgumentParser(
        prog="dmlkit", description="Deep metric learning: train, evaluate, embed, report."
    )
    parser.add_argument("--traceback", action="store_true", help="show the full trace of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = _command(sub, "train", "train an experiment (no CONFIG: the embedded demo)")
    train.add_argument("config", nargs="?", help="YAML config (default: the embedded demo)")
    _add_overrides(train)
    train.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_DIR",
        help="continue RUN_DIR from its last checkpoint (no value: the newest run of the config)",
    )

    for name, text in (
        ("eval", "evaluate a checkpoint on a split of its dataset"),
        ("embed", "write the embeddings of a split"),
    ):
        cmd = _command(sub, name, text, f"dmlkit.commands.embeddings:run_{name}")
        cmd.add_argument("checkpoint", help="a run's checkpoints/best.pt or last.pt")
        cmd.add_argument("--split", default="test", choices=("test", "val", "train"))
        _add_overrides(cmd)
        if name == "eval":
            cmd.add_argument("--json", help="also write the metrics to this JSON file")
        else:
            cmd.add_argument("--out", required=True, help="output .npy or .npz file")

    report = _command(sub, "report", "build the report of a finished run")
    report.add_argument("run_dir")

    protocol = _command(
        sub, "protocol", "k-fold Reality-Check protocol: mean ± CI over seeds on the test classes"
    )
    protocol.add_argument("config", help="YAML config with a protocol section")
    _add_overrides(protocol)

    convert = _command(
        sub,
        "convert",
        "convert a checkpoint of the old pickle format (dmlkit 0.1) to the current data-only "
        "format; only for files from a source you trust",
    )
    convert.add_argument("old", help="checkpoint of the old format")
    convert.add_argument("new", help="where to write the converted checkpoint")

    _command(sub, "list", "list the registered datasets, models, losses and methods")
    return parser


def _handler(target: str) -> Callable[[argparse.Namespace], int]:
    module, function = target.split(":")
    run: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), function)
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dmlkit`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(_handler(args.target)(args))
    except INPUT_ERRORS as err:
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
