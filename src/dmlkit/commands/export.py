"""``dmlkit export CHECKPOINT --format onnx|torchscript --out DIR``: the evaluated model as a file
another runtime loads, with ``model.json`` describing input, output and preprocessing."""

from __future__ import annotations

import argparse

from dmlkit.retrieval.export import export_model
from dmlkit.retrieval.model import bundle_from_checkpoint


def run(args: argparse.Namespace) -> int:
    """Export the model of CHECKPOINT (see :mod:`dmlkit.retrieval.export`)."""
    bundle = bundle_from_checkpoint(args.checkpoint, args.set)
    path, meta = export_model(bundle, args.format, args.out)
    print(f"wrote {path} ({args.format}, {bundle.embedding_dim}-d embeddings) and {meta}")
    return 0
