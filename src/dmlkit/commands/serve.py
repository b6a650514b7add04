"""``dmlkit serve INDEX [--host 127.0.0.1] [--port 8080]``: the HTTP search service
(:mod:`dmlkit.retrieval.service`), on the loopback address unless ``--host`` says otherwise."""

from __future__ import annotations

import argparse

from dmlkit.retrieval.retriever import Retriever
from dmlkit.retrieval.service import serve


def run(args: argparse.Namespace) -> int:
    """Serve INDEX until interrupted."""
    if args.max_upload_mb <= 0 or args.max_batch < 1:
        raise ValueError("--max-upload-mb and --max-batch: expected positive values")
    retriever = Retriever.load(args.index)
    print(f"serving {args.index} ({len(retriever.index)} items) on http://{args.host}:{args.port}/")
    serve(retriever, args.host, args.port, int(args.max_upload_mb * 1024 * 1024), args.max_batch)
    return 0
