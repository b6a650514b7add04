"""The ``dmlkit`` command: the argument parser, and the dispatch to one command module.

    dmlkit train [CONFIG] [--set a.b=c ...] [--resume [RUN_DIR]]
    dmlkit eval CHECKPOINT [--split test|val|train] [--set a.b=c ...] [--json OUT]
    dmlkit embed CHECKPOINT --out emb.npy|emb.npz [--split test|val|train] [--set a.b=c ...]
    dmlkit report RUN_DIR
    dmlkit protocol CONFIG [--set a.b=c ...]
    dmlkit convert OLD_CHECKPOINT NEW_CHECKPOINT
    dmlkit list
    dmlkit export CHECKPOINT --format onnx|torchscript --out DIR
    dmlkit index build CHECKPOINT --data FOLDER|CSV|SPLIT --out INDEX [--backend exact|flat|ivf|hnsw]
    dmlkit index add INDEX IMAGE... [--class NAME] | remove INDEX ID... | info INDEX
    dmlkit search INDEX QUERY... [--k 10] [--json] [--html OUT.html]
    dmlkit calibrate CHECKPOINT --index INDEX [--split val] [--fmr 1e-3]
    dmlkit serve INDEX [--host 127.0.0.1] [--port 8080]

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
        prog="dmlkit",
        description="Deep metric learning: train, evaluate, embed, report; export, index, "
        "search, calibrate, serve.",
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
    _retrieval_commands(sub)
    return parser


def _retrieval_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """export, index (build / add / remove / info), search, calibrate, serve."""
    export = _command(
        sub, "export", "export the evaluated model (L2-normalised) as TorchScript or ONNX"
    )
    export.add_argument("checkpoint", help="a run's checkpoints/best.pt or last.pt")
    export.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    export.add_argument("--out", required=True, help="output folder (model file + model.json)")
    _add_overrides(export)

    index = _command(sub, "index", "build, extend, shrink or describe an index of embeddings")
    actions = index.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = _command(
        actions, "build", "embed a collection and write an index", "dmlkit.commands.index:build"
    )
    build.add_argument("checkpoint", help="a run's checkpoints/best.pt or last.pt")
    build.add_argument(
        "--data",
        required=True,
        help="a folder of images (class subfolders), a CSV listing (path,label), or a split "
        "(train, val, test) of the run's dataset",
    )
    build.add_argument("--out", required=True, help="the index file to write")
    build.add_argument("--backend", default="exact", choices=("exact", "flat", "ivf", "hnsw"))
    build.add_argument("--nlist", type=int, help="ivf: inverted lists (default 4 sqrt(N))")
    build.add_argument("--nprobe", type=int, help="ivf: lists searched (default nlist / 8)")
    build.add_argument("--hnsw-m", type=int, default=32, help="hnsw: links per node")
    build.add_argument("--ef-search", type=int, default=64, help="hnsw: search breadth")
    build.add_argument("--batch-size", type=int, default=64)
    _add_overrides(build)
    add = _command(actions, "add", "embed images and add them", "dmlkit.commands.index:add")
    add.add_argument("index", help="an index file (updated in place)")
    add.add_argument("images", nargs="+", help="image files or folders of images")
    add.add_argument("--class", dest="class_name", default="", help="class name of the images")
    remove = _command(actions, "remove", "remove items by id", "dmlkit.commands.index:remove")
    remove.add_argument("index", help="an index file (updated in place)")
    remove.add_argument("ids", nargs="+", type=int, help="item ids")
    info = _command(actions, "info", "describe an index", "dmlkit.commands.index:info")
    info.add_argument("index")

    search = _command(sub, "search", "find the nearest indexed items of query images")
    search.add_argument("index", help="an index file")
    search.add_argument("queries", nargs="+", help="query images or folders of them")
    search.add_argument("--k", type=int, default=10, help="neighbours per query")
    search.add_argument("--json", action="store_true", help="print the results as JSON")
    search.add_argument("--html", help="also write a page with query and neighbour thumbnails")

    calibrate = _command(
        sub, "calibrate", "choose the match threshold at a false match rate and store it"
    )
    calibrate.add_argument("checkpoint", help="the checkpoint the index was built with")
    calibrate.add_argument("--index", required=True, help="the index that stores the threshold")
    calibrate.add_argument("--split", default="val", choices=("val", "test", "train"))
    calibrate.add_argument("--fmr", type=float, default=1e-3, help="false match rate")
    _add_overrides(calibrate)

    serve = _command(sub, "serve", "serve an index over HTTP: POST /search and a search page")
    serve.add_argument("index", help="an index file")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--max-upload-mb", type=float, default=10.0)
    serve.add_argument("--max-batch", type=int, default=32, help="images per forward pass")


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
